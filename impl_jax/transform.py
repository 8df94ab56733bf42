"""From a ``rules`` object to an optax transformation or a state.

``transformation(rule)`` is the same transformation the factories (``impl_jax.adagrad``
etc.) build from keywords: ``transformation(rules.preset("rmsprop", "torch"))`` and
``impl_jax.rmsprop()`` compute the same thing.
"""

from __future__ import annotations

import optax

from . import _core
from .adadelta import SPEC as _ADADELTA
from .adagrad import SPEC as _ADAGRAD
from .rmsprop import SPEC as _RMSPROP

# (The package re-exports the factories under the submodules' names, so import SPECs directly.)
SPECS: dict[type, _core.RuleSpec] = {spec.rule_cls: spec for spec in (_ADAGRAD, _ADADELTA, _RMSPROP)}


def spec_for(rule) -> _core.RuleSpec:
    try:
        return SPECS[type(rule)]
    except KeyError:
        raise TypeError(
            f"expected a rules.Adagrad, rules.Adadelta or rules.RMSprop, got {type(rule).__name__}"
        ) from None


def transformation(rule, *, lr=None) -> optax.GradientTransformation:
    """The rule as an optax ``GradientTransformation`` whose updates are the deltas to add.

    ``lr`` overrides ``rule.lr``; it may be a float or an optax schedule (a callable of the
    step count, evaluated at the count before the increment, as ``optax.scale_by_schedule``).
    """
    return _core.build_transformation(spec_for(rule), rule, lr=lr)


def init(rule, params):
    """The state before the first step for ``params`` (any pytree of floating arrays).

    A ``AdagradState``/``AdadeltaState``/``RMSpropState``: ``step`` an int32 scalar 0, each
    moment a tree like ``params`` with each leaf's dtype (Adagrad's ``sum`` filled with
    ``initial_accumulator_value``, everything else 0); absent moments are ``None``.
    """
    return _core.init_state(spec_for(rule), rule, params)
