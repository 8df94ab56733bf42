"""``preset(rule, convention)``: the rule with a source's defaults, from its ``PRESETS``.

- ``seed``: the tutorial this project descends from (lr 0.02, eps 1e-6 inside the root,
  RMSprop gamma 0.9, Adadelta with the implicit lr of 1).
- ``torch``: torch.optim's constructor defaults (the dataclasses' own defaults).
- ``optax``: optax's factory defaults (optax/_src/alias.py, transform.py). Where optax's
  factory takes ``learning_rate`` without a default, torch's default stands in for it.
  Complex parameters follow optax (``complex_as_real=False``: ``|g|^2`` moments).
"""

from __future__ import annotations

from .base import Rule
from .registry import CONVENTIONS, rule_class

__all__ = ["CONVENTIONS", "preset"]


def preset(rule: str, convention: str = "torch", **overrides) -> Rule:
    """The rule ``rule`` with ``convention``'s defaults, then ``overrides`` applied.

    >>> preset("rmsprop", "optax", lr=1e-3)
    RMSprop(lr=0.001, weight_decay=0.0, maximize=False, decoupled_weight_decay=False, complex_as_real=False, eps=1e-08, eps_in_sqrt=True, alpha=0.9, momentum=0.0, centered=False, initial_scale=0.0, nesterov=False, bias_correction=False)

    ``ValueError`` for an unknown rule or convention, or a convention the rule has no
    preset for."""
    cls = rule_class(rule)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention not in cls.PRESETS:
        raise ValueError(f"{cls.name} has no {convention!r} preset (it has {sorted(cls.PRESETS)})")
    return cls(**{**cls.PRESETS[convention], **overrides})
