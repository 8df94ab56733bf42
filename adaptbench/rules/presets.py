"""Presets that reproduce each source's defaults exactly (DESIGN.md, conventions table).

- ``seed``: the tutorial this project descends from (lr 0.02, eps 1e-6 inside the root,
  RMSprop gamma 0.9, Adadelta with the implicit lr of 1).
- ``torch``: torch.optim's constructor defaults.
- ``optax``: optax's factory defaults (optax/_src/alias.py, transform.py). optax's
  ``adagrad``/``rmsprop`` take ``learning_rate`` without a default; the torch default
  (1e-2) stands in for it. ``optax.adadelta``'s ``learning_rate`` defaults to None; an
  explicit lr of 1 is the only reading that matches the Adadelta paper. Complex
  parameters follow optax (``complex_as_real=False``: ``|g|^2`` moments).
"""

from __future__ import annotations

from .hyperparams import Adadelta, Adagrad, RMSprop, _Rule, rule_class

CONVENTIONS = ("seed", "torch", "optax")

_PRESETS: dict[tuple[str, str], dict] = {
    ("adagrad", "seed"): dict(lr=0.02, eps=1e-6, eps_in_sqrt=True),
    ("adagrad", "torch"): dict(),
    ("adagrad", "optax"): dict(
        eps=1e-7,
        eps_in_sqrt=True,
        initial_accumulator_value=0.1,
        mask_zero_accumulator=True,
        complex_as_real=False,
    ),
    ("rmsprop", "seed"): dict(lr=0.02, alpha=0.9, eps=1e-6, eps_in_sqrt=True),
    ("rmsprop", "torch"): dict(),
    ("rmsprop", "optax"): dict(alpha=0.9, eps=1e-8, eps_in_sqrt=True, complex_as_real=False),
    ("adadelta", "seed"): dict(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True),
    ("adadelta", "torch"): dict(),
    ("adadelta", "optax"): dict(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True, complex_as_real=False),
}


def preset(rule: str, convention: str = "torch", **overrides) -> _Rule:
    """The rule ``rule`` with ``convention``'s defaults, then ``overrides`` applied.

    >>> preset("rmsprop", "optax", lr=1e-3)
    RMSprop(lr=0.001, eps=1e-08, weight_decay=0.0, eps_in_sqrt=True, maximize=False, decoupled_weight_decay=False, complex_as_real=False, alpha=0.9, momentum=0.0, centered=False, initial_scale=0.0, nesterov=False, bias_correction=False)
    """
    cls = rule_class(rule)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return cls(**{**_PRESETS[(cls.name, convention)], **overrides})


__all__ = ["CONVENTIONS", "preset", "Adagrad", "Adadelta", "RMSprop"]
