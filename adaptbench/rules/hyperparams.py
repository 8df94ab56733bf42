"""Hyperparameters of the three rules: frozen dataclasses with validation.

Keyword names and defaults are torch.optim's (torch/optim/adagrad.py, adadelta.py,
rmsprop.py), so `rules.RMSprop(**kwargs)` accepts what `torch.optim.RMSprop` accepts.
Three switches cover the other conventions this suite reproduces:

- ``eps_in_sqrt``: ``g / sqrt(s + eps)`` (seed tutorial, optax) when True,
  ``g / (sqrt(s) + eps)`` (torch.optim Adagrad and RMSprop) when False. Adadelta's
  default is True because torch.optim's Adadelta puts eps inside both roots.
- ``maximize``: torch.optim's switch, ascend instead of descend (``g <- -g`` first).
- ``mask_zero_accumulator`` (Adagrad): update 0 where the accumulator is 0, as optax's
  ``scale_by_rss`` does; torch.optim yields 0/0 = NaN there when eps = 0.
- ``decoupled_weight_decay``: torch.optim.Adam's switch of that name (Loshchilov & Hutter
  2019, "Decoupled Weight Decay Regularization"): ``p <- p - lr*weight_decay*p`` before the
  rule's update, instead of adding ``weight_decay*p`` to the gradient. ``lr`` is the step's
  learning rate (Adagrad's ``clr``, a schedule's value). Keras 3 decays this way, always
  (keras/src/optimizers/base_optimizer.py, ``_apply_weight_decay``, called before
  ``update_step`` with the same ``learning_rate``).
- ``complex_as_real``: how a complex parameter is stepped. True (torch.optim, the default):
  as the real view of its (real, imaginary) pairs, every part its own element with its own
  state (torch/optim/adagrad.py etc. step ``torch.view_as_real``). False (optax): the
  second moments accumulate ``|g|^2 = conj(g)*g`` and are real-valued, first moments and
  momentum stay complex, and the update ``g / denom`` is complex (optax/_src/transform.py
  ``scale_by_rss``, ``scale_by_rms``, ``scale_by_stddev`` over ``numerics.abs_sq``).
  Real parameters step identically under both.

RMSprop also carries optax.rmsprop's ``initial_scale``, ``nesterov`` and
``bias_correction`` (optax/_src/alias.py ``rmsprop``, transform.py ``scale_by_rms``,
``scale_by_stddev``, transforms/_accumulation.py ``trace``); their defaults give
torch.optim's rule.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def _check_nonnegative(name: str, value) -> None:
    value = _check_real(name, value)
    if not value >= 0.0 or math.isinf(value):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_unit_interval(name: str, value) -> None:
    value = _check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Rule:
    """Fields and checks shared by every rule."""

    name: ClassVar[str]
    lr: float
    eps: float
    weight_decay: float = 0.0
    eps_in_sqrt: bool = False
    maximize: bool = False
    decoupled_weight_decay: bool = False
    complex_as_real: bool = True

    def __post_init__(self) -> None:
        for field in ("lr", "eps", "weight_decay"):
            _check_nonnegative(field, getattr(self, field))
        for field in ("eps_in_sqrt", "maximize", "decoupled_weight_decay", "complex_as_real"):
            _check_bool(field, getattr(self, field))
        # Store plain floats so that equal rules compare and hash equal.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, field.name, float(value))

    def replace(self, **changes) -> "_Rule":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Per-parameter state tensors besides ``step``, named as torch.optim names them."""
        raise NotImplementedError

    #: The properties that say which terms of the formula are present (``has_*``), as
    #: opposed to the numbers in them: what a compiled step specialises on, while every
    #: numeric field stays an input of it (``impl_torch/fused.py``).
    STRUCTURE: ClassVar[tuple[str, ...]] = ("has_weight_decay",)

    @property
    def has_weight_decay(self) -> bool:
        """Whether the ``weight_decay`` term is present (``weight_decay != 0``)."""
        return self.weight_decay != 0

    @property
    def accesses_per_element(self) -> int:
        """Element-sized accesses that one step must make: read p, g, each state; write p, each state.

        Multiply by the dtype's itemsize for bytes (fp32 Adagrad/RMSprop: 5 accesses, 20 B).
        """
        return 2 + 2 * len(self.state_names) + 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adagrad(_Rule):
    """Adagrad (Duchi, Hazan & Singer 2011), as torch.optim.Adagrad writes it.

    ``g <- g + weight_decay * p`` (or, when ``decoupled_weight_decay``,
    ``p <- p - lr*weight_decay*p``);  ``s <- s + g*g``;
    ``clr = lr / (1 + (t - 1) * lr_decay)`` with ``t`` the step count after increment;
    ``p <- p - clr * g / (sqrt(s) + eps)``  (``g / sqrt(s + eps)`` when ``eps_in_sqrt``),
    the quotient taken as 0 where ``s == 0`` when ``mask_zero_accumulator``.
    Complex ``p`` with ``complex_as_real=False``: ``s <- s + |g|^2`` (real), ``g / root`` complex.
    The initial ``s`` is ``initial_accumulator_value`` in every real element (both parts of a
    complex one under ``complex_as_real``, as torch.optim fills them).
    """

    name: ClassVar[str] = "adagrad"
    lr: float = 1e-2
    eps: float = 1e-10
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    mask_zero_accumulator: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_nonnegative("lr_decay", self.lr_decay)
        _check_nonnegative("initial_accumulator_value", self.initial_accumulator_value)
        _check_bool("mask_zero_accumulator", self.mask_zero_accumulator)

    STRUCTURE: ClassVar[tuple[str, ...]] = _Rule.STRUCTURE + ("has_lr_decay",)

    @property
    def has_lr_decay(self) -> bool:
        """Whether ``clr`` decays with the step count (``lr_decay != 0``)."""
        return self.lr_decay != 0

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("sum",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adadelta(_Rule):
    """Adadelta (Zeiler 2012), as torch.optim.Adadelta writes it.

    ``g <- g + weight_decay * p`` (or, when ``decoupled_weight_decay``,
    ``p <- p - lr*weight_decay*p``);  ``v <- rho*v + (1-rho)*g*g``;
    ``d = sqrt(u + eps) / sqrt(v + eps) * g``  (``(sqrt(u)+eps) / (sqrt(v)+eps) * g`` when
    not ``eps_in_sqrt``);  ``u <- rho*u + (1-rho)*d*d``;  ``p <- p - lr * d``.
    torch.optim names ``v`` ``square_avg`` and ``u`` ``acc_delta``.
    Complex ``p`` with ``complex_as_real=False``: ``v`` and ``u`` accumulate ``|g|^2`` and
    ``|d|^2`` (real), ``d`` is complex. optax's ``scale_by_adadelta`` squares ``g`` itself
    (``g**2``, complex) and optax declares Adadelta unsupported for complex parameters; this
    rule keeps the ``|.|^2`` of optax's other two rules instead.
    """

    name: ClassVar[str] = "adadelta"
    lr: float = 1.0
    eps: float = 1e-6
    rho: float = 0.9
    eps_in_sqrt: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unit_interval("rho", self.rho)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RMSprop(_Rule):
    """RMSprop (Tieleman & Hinton 2012), as torch.optim.RMSprop writes it.

    ``g <- g + weight_decay * p`` (or, when ``decoupled_weight_decay``,
    ``p <- p - lr*weight_decay*p``);  ``v <- alpha*v + (1-alpha)*g*g``;
    centered: ``m <- alpha*m + (1-alpha)*g`` and ``v~ = v - m*m``, else ``v~ = v``;
    ``q = g / (sqrt(v~) + eps)``  (``g / sqrt(v~ + eps)`` when ``eps_in_sqrt``);
    momentum > 0: ``b <- momentum*b + q``, ``p <- p - lr*b``; else ``p <- p - lr*q``.
    The momentum buffer is traced before scaling by lr (torch.optim); optax traces the
    already-scaled update, which is the same only for a constant lr.

    optax.rmsprop's options (off by default, which is torch.optim's rule):
    ``initial_scale``: the initial ``v`` (every real element, as Adagrad's accumulator).
    ``bias_correction``: with ``t`` the step count after increment, ``v`` and (centered)
    ``m`` enter the denominator as ``v / (1 - alpha**t)`` and ``m / (1 - alpha**t)``; the
    state keeps the uncorrected values.
    ``nesterov``: the step uses ``q + momentum*b`` (``b`` already updated) instead of ``b``;
    without momentum it changes nothing, as in optax.
    Complex ``p`` with ``complex_as_real=False``: ``v`` accumulates ``|g|^2`` (real), ``m``,
    ``b`` and ``q`` are complex, and centered uses ``v - |m|^2``.
    """

    name: ClassVar[str] = "rmsprop"
    lr: float = 1e-2
    eps: float = 1e-8
    alpha: float = 0.99
    momentum: float = 0.0
    centered: bool = False
    initial_scale: float = 0.0
    nesterov: bool = False
    bias_correction: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unit_interval("alpha", self.alpha)
        _check_nonnegative("momentum", self.momentum)
        _check_nonnegative("initial_scale", self.initial_scale)
        for field in ("centered", "nesterov", "bias_correction"):
            _check_bool(field, getattr(self, field))

    STRUCTURE: ClassVar[tuple[str, ...]] = _Rule.STRUCTURE + ("has_momentum",)

    @property
    def has_momentum(self) -> bool:
        """Whether a momentum buffer is kept (``momentum > 0``)."""
        return self.momentum > 0

    @property
    def state_names(self) -> tuple[str, ...]:
        names = ("square_avg",)
        if self.centered:
            names += ("grad_avg",)
        if self.has_momentum:
            names += ("momentum_buffer",)
        return names


RULES: dict[str, type[_Rule]] = {cls.name: cls for cls in (Adagrad, Adadelta, RMSprop)}


def rule_class(name: str) -> type[_Rule]:
    """The rule class for ``"adagrad"``, ``"adadelta"`` or ``"rmsprop"`` (case-insensitive)."""
    if not isinstance(name, str) or name.lower() not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {name!r}")
    return RULES[name.lower()]
