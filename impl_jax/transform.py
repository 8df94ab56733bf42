"""From a ``rules`` object to an optax transformation or a state.

``transformation(rule)`` is the same transformation the rule's factory builds from
keywords: ``transformation(rules.preset(name, "torch"))`` and the factory called with its
defaults compute the same thing.
"""

from __future__ import annotations

import optax

from adaptbench import rules

from . import _core


def spec_for(rule) -> _core.RuleSpec:
    """The registered JAX math of ``rule``'s rule (``_core.SPECS``); ``TypeError`` for
    anything else."""
    spec = _core.SPECS.get(getattr(rule, "name", None)) if isinstance(rule, rules.Rule) else None
    if spec is None or not isinstance(rule, spec.rule_cls):
        raise TypeError(
            f"expected a rules object of one of {sorted(_core.SPECS)} (a rules.Rule registered "
            f"with impl_jax.register_rule), got {type(rule).__name__}"
        )
    return spec


def transformation(rule, *, lr=None) -> optax.GradientTransformation:
    """The rule as an optax ``GradientTransformation`` whose updates are the deltas to add.

    ``lr`` overrides ``rule.lr``; it may be a float or an optax schedule (a callable of the
    step count, evaluated at the count before the increment, as ``optax.scale_by_schedule``).
    """
    return _core.build_transformation(spec_for(rule), rule, lr=lr)


def init(rule, params):
    """The state before the first step for ``params`` (any pytree of floating arrays).

    The rule's state NamedTuple: ``step`` an int32 scalar 0, each moment a tree like
    ``params`` with each leaf's dtype, filled with ``rule.initial_value(name)``; absent
    moments are ``None``.
    """
    return _core.init_state(spec_for(rule), rule, params)
