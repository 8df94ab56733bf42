"""What every rule's specification is made of: the ``Rule`` base class, its checks, and
``Peer`` (how another library spells the rule).

A rule is one module (``adaptbench/rules/adagrad.py``, ...; a user's own module for a rule
of their own) holding a frozen dataclass derived from :class:`Rule`, registered with
``rules.register``. The class carries, besides its hyperparameters and their validation:

- its **state layout**: ``STATE`` (every per-parameter state tensor it may keep, named as
  torch.optim names them, in order), ``state_names`` (those this configuration keeps),
  ``SECOND_MOMENTS`` (the ones that accumulate squares: real-valued for a complex
  parameter under ``complex_as_real=False``) and :meth:`Rule.initial_value`;
  ``STEP_IN_STATE`` (whether torch.optim keeps a per-parameter ``"step"`` counter: True
  for Adagrad, Adadelta, RMSprop; False for SGD, whose state is its momentum buffer only);
  ``FIRST_GRADIENT_STATE`` (the states torch.optim creates at a parameter's first step
  from that step's effective gradient, SGD's ``momentum_buffer = grad.clone()``, rather
  than filling them at init) with :meth:`Rule.first_step_rule`, the rule whose step from
  those states at zero computes that first step;
- its **conventions**: ``PRESETS``, the keyword overrides that reproduce each source
  (``"seed"``, ``"torch"``, ``"optax"``) exactly;
- **torch.optim's signature**: ``TORCH_POSITIONAL`` and ``TORCH_KEYWORD_ONLY``, the order
  and kinds of torch.optim's constructor arguments after ``params`` (hyperparameters and
  the flags ``foreach``, ``maximize``, ``capturable``, ``differentiable``, ``fused``), from
  which ``impl_torch`` and ``impl_jax`` make their classes and factories; and
  ``TORCH_TUPLES``, the arguments that pack several fields (Adam's
  ``betas=(beta1, beta2)``: :meth:`Rule.torch_keywords`, :meth:`Rule.unpack_keywords`);
- **what each hyperparameter is to a kernel**: ``STRUCTURE`` (the ``has_*`` properties
  that select a compiled kernel, beside the bools) and :meth:`Rule.multiplier_only`
  (a field only ever multiplied or added, which a kernel may round to the working dtype
  once);
- the **float64 oracle** of its own math, :meth:`Rule.reference_update`
  (``rules.reference.step`` runs the shared prologue around it);
- its **peers as data**, ``PEERS``: for ``"torch"``, ``"optax"`` and ``"keras"`` the name
  of the class or factory, how keywords map, and what the peer fixes
  (:class:`Peer`; names only, nothing here imports a framework).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["Rule", "Peer", "check_real", "check_nonnegative", "check_unit_interval", "check_unit_interval_open",
           "check_bool"]


def check_real(name: str, value) -> float:
    """``value`` as a float; ``TypeError`` unless a real number, ``ValueError`` for NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def check_nonnegative(name: str, value) -> None:
    """``ValueError`` unless ``value`` is finite and >= 0."""
    value = check_real(name, value)
    if not value >= 0.0 or math.isinf(value):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def check_unit_interval(name: str, value) -> None:
    """``ValueError`` unless ``0 <= value <= 1``."""
    value = check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def check_unit_interval_open(name: str, value, alias: str | None = None) -> None:
    """``ValueError`` unless ``0 <= value < 1`` (a decay rate whose bias correction
    ``1 - value**t`` must not vanish); ``alias``, the argument's torch.optim spelling
    (``betas[0]``), is named too."""
    value = check_real(name, value)
    if not 0.0 <= value < 1.0:
        named = name if alias is None else f"{name} ({alias})"
        raise ValueError(f"{named} must lie in [0, 1), got {value!r}")


def check_bool(name: str, value) -> None:
    """``TypeError`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


@dataclasses.dataclass(frozen=True)
class Peer:
    """How another library spells a rule: ``name`` (a ``torch.optim`` class, an ``optax``
    factory, a ``keras.optimizers`` class), ``keywords`` (our field -> its keyword; fields
    it takes under our name map to themselves) and ``fixed`` (our field -> the only value
    the peer computes: a rule with another value has no setting there).
    :meth:`Rule.peer_kwargs` applies it."""

    name: str
    keywords: Mapping[str, str]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """Fields and checks shared by every rule (see the module docstring for the class
    attributes a rule defines).

    ``lr``, ``weight_decay`` (>= 0); ``maximize`` (``g <- -g`` first); ``decoupled_weight_decay`` (torch.optim.Adam's switch:
    ``p <- p - lr*weight_decay*p`` before the update, Loshchilov & Hutter 2019, instead of
    ``g <- g + weight_decay*p``); ``complex_as_real`` (True, torch.optim: a complex
    parameter stepped as the real view of its parts; False, optax: ``|g|^2`` second moments,
    real-valued, the rest complex).
    """

    name: ClassVar[str]
    STATE: ClassVar[tuple[str, ...]] = ()
    SECOND_MOMENTS: ClassVar[frozenset[str]] = frozenset()
    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ()
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = ()
    #: torch.optim arguments that pack several fields, e.g. ``{"betas": ("beta1", "beta2")}``:
    #: the optimizer classes and factories take the tuple (torch.optim's spelling) or the
    #: fields; a param group keeps the tuple, as torch.optim's does.
    TORCH_TUPLES: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Overrides of torch.optim's defaults giving the configuration users typically run,
    #: where the defaults leave the rule's point out (SGD: momentum 0.9, heavy-ball
    #: momentum as training scripts use it; torch.optim's default momentum is 0): the one
    #: the benchmark sweep times.
    TYPICAL: ClassVar[Mapping[str, Any]] = {}
    PEERS: ClassVar[Mapping[str, Peer]] = {}
    #: The properties that say which terms of the formula are present (``has_*``), as
    #: opposed to the numbers in them: what a compiled step specialises on, while every
    #: numeric field stays an input of it (``impl_torch/fused.py``).
    STRUCTURE: ClassVar[tuple[str, ...]] = ("has_weight_decay",)
    #: Whether torch.optim keeps a per-parameter ``"step"`` count in the state (every
    #: implementation then keeps and increments one); False: the state holds ``state_names``
    #: only (torch.optim.SGD), and a parameter whose rule keeps no state has no entry at all.
    STEP_IN_STATE: ClassVar[bool] = True
    #: State names (among ``STATE``) that torch.optim creates at a parameter's first step
    #: from that step's effective gradient (torch.optim.SGD's ``momentum_buffer =
    #: grad.clone()``) instead of at init: a fresh state lacks them, the first step
    #: allocates them as zeros (``initial_value`` must be 0) and runs
    #: :meth:`first_step_rule`.
    FIRST_GRADIENT_STATE: ClassVar[frozenset[str]] = frozenset()

    lr: float
    weight_decay: float = 0.0
    maximize: bool = False
    decoupled_weight_decay: bool = False
    complex_as_real: bool = True

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if type(field.default) is bool:
                check_bool(field.name, value)
            elif type(field.default) is float or field.name == "lr":
                check_nonnegative(field.name, value)
        self.check()
        # Store plain floats so that equal rules compare and hash equal.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, field.name, float(value))

    def check(self) -> None:
        """A rule's own checks beyond the defaults' (every bool a bool, every float finite
        and >= 0): raise ``ValueError``/``TypeError`` naming the argument."""

    def replace(self, **changes) -> "Rule":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The fields by name (the keywords of the dataclass)."""
        return dataclasses.asdict(self)

    def torch_keywords(self) -> dict:
        """:meth:`as_dict` with the fields of each ``TORCH_TUPLES`` argument packed as
        torch.optim takes them (``{"betas": (0.9, 0.999), ...}``)."""
        kwargs = self.as_dict()
        for packed, fields in self.TORCH_TUPLES.items():
            kwargs[packed] = tuple(kwargs.pop(f) for f in fields)
        return kwargs

    @classmethod
    def unpack_keywords(cls, kwargs: Mapping, *, defaults: Mapping | None = None) -> dict:
        """``kwargs`` with each ``TORCH_TUPLES`` argument (``betas``) unpacked into its
        fields. Either spelling may be used: a field given (not ``None``) takes the place
        of its entry of the tuple, which must then be ``defaults[packed]`` (the
        dataclass's defaults when not given: a signature's default), else ``ValueError``
        naming both. ``TypeError`` unless the tuple is a sequence of the right length
        (a 1-D array too: an injected JAX hyperparameter)."""
        kwargs = dict(kwargs)
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        for packed, parts in cls.TORCH_TUPLES.items():
            default = tuple(fields[f] for f in parts) if defaults is None else defaults[packed]
            value = kwargs.pop(packed, default)
            given = {f: kwargs[f] for f in parts if kwargs.get(f) is not None}
            for f in parts:
                kwargs.pop(f, None)
            try:
                entries = list(value)
            except TypeError:
                entries = None
            if entries is None or len(entries) != len(parts):
                raise TypeError(f"{packed} must be a tuple of {len(parts)} numbers ({', '.join(parts)}), "
                                f"got {type(value).__name__} {value!r}")
            if given and not _same_tuple(entries, default):
                raise ValueError(f"pass {packed} or {', '.join(given)}, not both (got {packed}={value!r} "
                                 f"and {', '.join(f'{f}={v!r}' for f, v in given.items())})")
            kwargs.update(zip(parts, entries))
            kwargs.update(given)
        return kwargs

    @property
    def state_names(self) -> tuple[str, ...]:
        """Per-parameter state tensors besides ``step`` that this configuration keeps."""
        return self.STATE

    def initial_value(self, name: str) -> float:
        """The value state ``name`` starts at in every real element (0 unless the rule says)."""
        return 0.0

    def first_step_rule(self) -> "Rule":
        """The rule that computes a parameter's first step from its ``FIRST_GRADIENT_STATE``
        at zero, exactly as torch.optim's first step creates them from the gradient: one
        implementation of the update serves both steps, without a branch per parameter
        inside the kernels (SGD: ``dampening=0``, so that ``b <- momentum*0 + (1-0)*g`` is
        ``g``). ``self`` for a rule without such state."""
        return self

    @property
    def has_weight_decay(self) -> bool:
        """Whether the ``weight_decay`` term is present (``weight_decay != 0``)."""
        return self.weight_decay != 0

    def multiplier_only(self, field: str) -> bool:
        """Whether numeric ``field`` is, in this configuration, only ever a multiplier or
        addend of the tensors (never computed with: ``1 - alpha``, ``lr / (...)``), so that
        a kernel may round it to a float32/float64 working dtype once, before the loop."""
        if field in ("eps", "momentum"):
            return True
        decoupled = self.decoupled_weight_decay and self.has_weight_decay
        if field == "lr":
            return not decoupled
        if field == "weight_decay":
            return not self.decoupled_weight_decay
        return False

    @property
    def accesses_per_element(self) -> int:
        """Element-sized accesses that one step must make: read p, g, each state; write p, each state.

        Multiply by the dtype's itemsize for bytes (fp32 Adagrad/RMSprop: 5 accesses, 20 B;
        SGD without momentum 3 accesses, 12 B). The step count is a scalar, not counted.
        """
        return 2 + 2 * len(self.state_names) + 1

    def reference_update(self, p, g, state: dict, new: dict, decay):
        """The rule's own math in float64 NumPy, after the shared prologue
        (``rules.reference.step``: ``maximize`` and coupled weight decay applied to ``g``,
        ``new["step"]`` the count after the increment). Writes the new state arrays into
        ``new``, calls ``decay(p, lr)`` (decoupled weight decay: ``p - lr*weight_decay*p``
        when on, else ``p``) with the step's learning rate before its own update of ``p``,
        and returns the new ``p``."""
        raise NotImplementedError(f"{type(self).__name__} defines no reference_update")

    def irrelevant(self, field: str) -> bool:
        """Whether ``field``'s value changes nothing in this configuration (e.g.
        ``decoupled_weight_decay`` without weight decay), so that a peer fixing it to
        another value still computes this rule."""
        return field == "decoupled_weight_decay" and not self.has_weight_decay

    def peer_kwargs(self, peer: str, *, complex_params: bool = False) -> dict:
        """The keywords of ``PEERS[peer]`` that compute this rule, e.g.
        ``rules.RMSprop(alpha=0.9).peer_kwargs("torch")`` ->
        ``{"lr": 0.01, "alpha": 0.9, ...}`` for ``torch.optim.RMSprop``. ``ValueError``
        naming the field when the peer has no setting for this rule (a field the peer fixes
        to another value), or naming the peer when the rule has none. ``complex_as_real``
        is checked only for ``complex_params``: real parameters step the same under both."""
        spec = self.PEERS.get(peer)
        if spec is None:
            raise ValueError(f"{self.name} names no {peer!r} peer (its peers: {sorted(self.PEERS)})")
        for field, value in spec.fixed.items():
            if field == "complex_as_real" and not complex_params:
                continue
            if getattr(self, field) != value and not self.irrelevant(field):
                raise ValueError(
                    f"{peer} {spec.name} has no setting for {self.name} with {field}="
                    f"{getattr(self, field)!r} (it computes {field}={value!r} only)"
                )
        kwargs = {spec.keywords.get(f, f): getattr(self, f) for f in self._peer_fields(spec)}
        if peer == "torch":
            for packed, fields in self.TORCH_TUPLES.items():
                kwargs[packed] = tuple(kwargs.pop(f) for f in fields)
        return kwargs

    def _peer_fields(self, spec: Peer) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if f.name not in spec.fixed]


def _same_tuple(value, other: tuple) -> bool:
    try:
        return len(value) == len(other) and all(bool(a == b) for a, b in zip(value, other))
    except TypeError:  # a traced array: not the default
        return False
