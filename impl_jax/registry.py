"""``register_rule``: a rule's JAX math, for a rule registered in ``adaptbench.rules``."""

from __future__ import annotations

from typing import Callable

from adaptbench import rules

from . import _core

__all__ = ["register_rule"]


def register_rule(name: str, leaf: Callable, *, state_cls: type | None = None, scalars: Callable | None = None,
                  switches: tuple[tuple[str, str], ...] = (), replace: bool = False) -> Callable:
    """Register the JAX math of the rule ``name`` and return its factory (torch.optim's
    keywords and defaults, an optax ``GradientTransformationExtraArgs``).

    ``leaf(P, rule, p, g, *moments, **scalars) -> (delta, *new_moments)``: one leaf of one
    step, ``moments`` in ``rule.STATE``'s order (``None`` for those this configuration does
    not keep), ``P`` the precision helper (``impl_jax._core.Precision``: ``P.up``,
    ``P.rnd``, ``P.store``, ``P.root``, ...), ``delta`` what ``optax.apply_updates`` adds.
    ``state_cls``: the state NamedTuple (default: ``<Rule>State`` with ``step`` and
    ``rule.STATE``). ``scalars(rule, lr, count) -> dict``: the leaf's per-step keyword
    scalars (default ``{"lr": lr}``). ``switches``: ``(field, moment)`` pairs, a numeric
    field whose value > 0 switches that moment on. ``ValueError`` for a rule not in
    ``rules.RULES`` or registered here already (unless ``replace``)."""
    rule_cls = rules.rule_class(name)
    options = {} if scalars is None else {"scalars": scalars}
    spec = _core.RuleSpec(rule_cls=rule_cls, state_cls=state_cls or _core.state_class(rule_cls),
                          leaf=leaf, switches=tuple(switches), **options)
    return _core.register(spec, replace=replace)
