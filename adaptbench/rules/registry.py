"""The one registry of rules: ``register`` a ``Rule`` subclass, look it up by name.

Everything that iterates rules (the frameworks' classes and factories, dispatch, the
benchmark cases, the reports, the training experiment, the tests) reads ``RULES``, in
registration order: the three rules of the tutorial first, then the later ones, then any
a user registers from their own module (``docs/adding-a-rule.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from .base import Rule

__all__ = ["RULES", "register", "rule_class"]

_RULES: dict[str, type[Rule]] = {}

#: The conventions a rule's ``PRESETS`` may name (``rules.preset``).
CONVENTIONS = ("seed", "torch", "optax")

_FLAGS = ("foreach", "maximize", "capturable", "differentiable", "fused")


class _Registry(Mapping):
    """A live, read-only view of the registered rules: name -> rule class."""

    def __getitem__(self, name: str) -> type[Rule]:
        return _RULES[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_RULES)

    def __len__(self) -> int:
        return len(_RULES)

    def __repr__(self) -> str:
        return f"RULES({list(_RULES)})"


#: Every registered rule, name -> class, in registration order.
RULES = _Registry()


def register(cls: type[Rule]) -> type[Rule]:
    """Add a rule class to the registry (usable as a class decorator); returns it.

    Checked here, so that a mistake shows where the rule is written: ``cls`` is a frozen
    dataclass derived from ``rules.Rule`` with a lower-case ``name`` not yet registered;
    ``PRESETS`` names known conventions (``CONVENTIONS``) and real fields; ``STATE`` holds
    ``state_names`` and ``SECOND_MOMENTS``; ``TORCH_POSITIONAL``/``TORCH_KEYWORD_ONLY`` name
    fields or torch.optim's flags (``foreach``, ``maximize``, ``capturable``,
    ``differentiable``, ``fused``) or ``TORCH_TUPLES`` (each packing fields that are not
    arguments themselves) once each; ``PEERS``' keywords and fixed values name
    fields; ``STEP_IN_STATE`` is a bool and ``FIRST_GRADIENT_STATE`` a frozenset of names
    in ``STATE`` (not ``SECOND_MOMENTS``, whose dtype may differ from the gradient's) that
    start at 0 in the torch preset; and ``reference_update`` is defined. ``TypeError``/``ValueError`` otherwise."""
    # its own decorator: a subclass that is not itself a dataclass inherits Rule's dataclass
    # attributes, and its annotations would silently not be fields
    if not (isinstance(cls, type) and issubclass(cls, Rule) and "__dataclass_fields__" in cls.__dict__):
        raise TypeError(f"register takes a class derived from rules.Rule and decorated with "
                        f"@dataclasses.dataclass(frozen=True, kw_only=True), got {cls!r}")
    if not cls.__dataclass_params__.frozen:
        raise TypeError(f"{cls.__name__} must be a frozen dataclass (rules are hashable values)")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"{cls.__name__}.name must be a non-empty lower-case str, got {name!r}")
    if name in _RULES and _RULES[name] is not cls:
        raise ValueError(f"a rule named {name!r} is already registered ({_RULES[name].__qualname__})")
    if cls.reference_update is Rule.reference_update:
        raise TypeError(f"{cls.__name__} defines no reference_update (the float64 oracle)")
    fields = {f.name for f in dataclasses.fields(cls)}
    for convention, overrides in cls.PRESETS.items():
        if convention not in CONVENTIONS:
            raise ValueError(f"{cls.__name__}.PRESETS names {convention!r}; conventions: {CONVENTIONS}")
        _known(cls, f"PRESETS[{convention!r}]", overrides, fields)
    default = cls(**cls.PRESETS.get("torch", {})) if "torch" in cls.PRESETS else None
    if default is not None and not set(default.state_names) <= set(cls.STATE):
        raise ValueError(f"{cls.__name__}.STATE must hold every state name; lacks "
                         f"{set(default.state_names) - set(cls.STATE)}")
    if not set(cls.SECOND_MOMENTS) <= set(cls.STATE):
        raise ValueError(f"{cls.__name__}.SECOND_MOMENTS must be among STATE {cls.STATE}")
    if not isinstance(cls.STEP_IN_STATE, bool):
        raise TypeError(f"{cls.__name__}.STEP_IN_STATE must be a bool, got {cls.STEP_IN_STATE!r}")
    first = cls.FIRST_GRADIENT_STATE
    if not isinstance(first, frozenset):
        raise TypeError(f"{cls.__name__}.FIRST_GRADIENT_STATE must be a frozenset, got {first!r}")
    if not first <= set(cls.STATE) or first & cls.SECOND_MOMENTS:
        raise ValueError(f"{cls.__name__}.FIRST_GRADIENT_STATE must be among STATE {cls.STATE} "
                         f"and not SECOND_MOMENTS (a copy of the gradient), got {sorted(first)}")
    if default is not None and any(default.initial_value(n) != 0 for n in first):
        raise ValueError(f"{cls.__name__}.FIRST_GRADIENT_STATE {sorted(first)} must start at 0 "
                         f"(the first step computes them from zeros with first_step_rule())")
    signature = cls.TORCH_POSITIONAL + cls.TORCH_KEYWORD_ONLY
    if len(set(signature)) != len(signature):
        raise ValueError(f"{cls.__name__}'s torch.optim signature names an argument twice: {signature}")
    for packed, parts in cls.TORCH_TUPLES.items():
        _known(cls, f"TORCH_TUPLES[{packed!r}]", parts, fields)
        if packed not in signature or set(parts) & set(signature):
            raise ValueError(f"{cls.__name__}.TORCH_TUPLES[{packed!r}] must be an argument of the torch.optim "
                             f"signature whose fields {parts} are not arguments of their own")
    _known(cls, "TORCH_POSITIONAL/TORCH_KEYWORD_ONLY", signature, fields | set(_FLAGS) | set(cls.TORCH_TUPLES))
    _known(cls, "TYPICAL", cls.TYPICAL, fields)
    for peer, spec in cls.PEERS.items():
        _known(cls, f"PEERS[{peer!r}]", {**spec.keywords, **spec.fixed}, fields)
    _RULES[name] = cls
    return cls


def _known(cls, where: str, names, fields: set) -> None:
    unknown = sorted(set(names) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__}.{where} names {unknown}, which are not its fields")


def rule_class(name: str) -> type[Rule]:
    """The registered rule class named ``name`` (case-insensitive); ``ValueError`` listing
    the registered names otherwise."""
    if not isinstance(name, str) or name.lower() not in _RULES:
        raise ValueError(f"rule must be one of {sorted(_RULES)}, got {name!r}")
    return _RULES[name.lower()]
