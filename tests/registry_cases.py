"""What the agreement suites read off the registry (``rules.RULES``), so that a rule
registered anywhere, a user's included (``pytest --rules-module``), is tested without an
edit: each rule's options, its invalid values, and a peer built for a rule object.

The peer's class comes from ``tests/peer_lookup.py`` (the one place peers are looked up),
called with ``rule.peer_kwargs(peer)``. A rule without a peer (``tests/user_rule.py``) is
left out of the comparisons with that library (``peer_lookup.rule_names(peer)``) and still
runs every comparison among our own implementations.
"""

from __future__ import annotations

import dataclasses
import math

from adaptbench import rules
from tests import peer_lookup
from tests.rule_options import completed, structural_options

_PEER_CLASS = {"torch": peer_lookup.torch_class, "optax": peer_lookup.optax_factory,
               "keras": peer_lookup.keras_class}


def base(cls, convention: str = "torch") -> rules.Rule:
    """``cls`` under ``convention``'s preset; its dataclass defaults (torch.optim's) where
    it has none (``Rule.PRESETS`` may lack a convention)."""
    return cls(**cls.PRESETS.get(convention, {}))


def _single_options(cls) -> dict:
    # rule_options' single options are exactly the fields that switch a term on or off
    # (each option's own field: the first of its overrides)
    return dict(next(iter(overrides.items())) for _, overrides in structural_options(cls)[1:-1])


def switches(cls) -> list[str]:
    """The bool fields that change what is computed (``complex_as_real`` aside: real
    parameters step the same under both)."""
    return [k for k, v in _single_options(cls).items() if isinstance(v, bool)]


def terms(cls) -> list[str]:
    """The numeric fields whose default 0 leaves a term out (``weight_decay``, ``lr_decay``,
    ``momentum``, ...)."""
    return [k for k, v in _single_options(cls).items() if not isinstance(v, bool)]


def has_field(cls, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(cls)}


def everything(rule: rules.Rule, term: float = 0.5, weight_decay: float = 0.01) -> dict:
    """Overrides switching every term of ``rule`` on at once: each switch flipped from
    ``rule``'s value, each zero-default term ``term``, weight decay ``weight_decay``, kept
    coupled or decoupled as ``rule`` has it (the coupled form is the one that can cancel)."""
    cls = type(rule)
    overrides = {name: not getattr(rule, name) for name in switches(cls) if name != "decoupled_weight_decay"}
    overrides |= {name: term for name in terms(cls)}
    overrides |= {"weight_decay": weight_decay}
    return completed(lambda o: rule.replace(**o), overrides, {name: term for name in terms(cls)})


def every_state(cls) -> dict:
    """Overrides under which ``cls``'s torch preset keeps every state it can (RMSprop
    centered with momentum, Adam's amsgrad maximum, SGD's momentum buffer)."""
    rule, out = base(cls), {}
    for _, overrides in structural_options(cls)[1:-1]:
        if set(rule.replace(**overrides).state_names) - set(rule.state_names):
            out |= overrides
    return out


def flipped(rule: rules.Rule, name: str, term: float = 0.5) -> dict | None:
    """Overrides flipping switch ``name`` of ``rule``, with a term it needs (SGD's nesterov:
    momentum), :func:`rule_options.completed`; None when no such rule is valid."""
    return completed(lambda o: rule.replace(**o), {name: not getattr(rule, name)},
                     {t: term for t in terms(type(rule))})


def halved(rule: rules.Rule) -> rules.Rule:
    """``rule`` with every nonzero numeric hyperparameter halved (valid wherever the
    original is: every range is an interval from 0)."""
    return rule.replace(**{k: v / 2 for k, v in rule.as_dict().items() if type(v) is float and v != 0})


def option_cases(rule: rules.Rule, term: float = 0.5) -> list[tuple[str, rules.Rule]]:
    """``(id, rule)``: ``rule``, each switch flipped and each term on alone (skipping
    what changes nothing there, ``Rule.irrelevant``), and everything at once
    (:func:`everything`)."""
    cls = type(rule)
    cases = [("defaults", rule)]
    for name in switches(cls):
        changed = rule.replace(**flipped(rule, name, term))
        if not changed.irrelevant(name):
            cases.append((f"{name}={getattr(changed, name)}", changed))
    cases += [(f"{name}={term}", rule.replace(**{name: term})) for name in terms(cls)]
    cases.append(("all", rule.replace(**everything(rule, term))))
    return cases


def bad_values(cls) -> list[tuple[str, float]]:
    """``(field, value)`` that the specification refuses with a ``ValueError``: every
    numeric field at -1, NaN and infinity, and at 1.5 where refused (a unit interval)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    numeric = [n for n, v in defaults.items() if type(v) is float]
    cases = []
    for name in numeric:
        for value in (-1.0, 1.5, math.nan, math.inf):
            try:
                cls(**{name: value})
            except ValueError:
                cases.append((name, value))
    return cases


def computes(rule: rules.Rule, peer: str) -> bool:
    """Whether ``peer`` has a setting for ``rule`` (``Rule.peer_kwargs``)."""
    try:
        rule.peer_kwargs(peer)
    except ValueError:
        return False
    return True


def make_peer(rule: rules.Rule, peer: str, *args, fields: dict | None = None, **extra):
    """The peer computing ``rule``: ``torch.optim.<Name>(params, **kwargs, foreach=...)``,
    ``optax.<name>(**kwargs)``; ``args`` and ``extra`` pass through. ``fields``: values
    (under our field names) for the peer's keywords that the rule cannot hold, e.g. an
    optax schedule for ``lr``."""
    kwargs = rule.peer_kwargs(peer)
    keywords = rule.PEERS[peer].keywords
    kwargs |= {keywords.get(name, name): value for name, value in (fields or {}).items()}
    return _PEER_CLASS[peer](rule.name)(*args, **kwargs, **extra)


def peer_cases(rule: rules.Rule, peer: str, term: float = 0.5) -> list[tuple[str, rules.Rule]]:
    """:func:`option_cases` that ``peer`` computes, one per distinct set of its keywords;
    ``all`` then holds every option the peer takes."""
    cls = type(rule)
    cases, seen = [], set()
    singles = [(i, r) for i, r in option_cases(rule, term)[:-1] if computes(r, peer)]
    merged = {k: v for _, r in singles[1:] for k, v in r.as_dict().items() if v != getattr(rule, k)}
    merged = completed(lambda o: cls(**{**rule.as_dict(), **o}), merged,
                       {k: v for k, v in merged.items() if type(v) is float})
    together = cls(**{**rule.as_dict(), **merged})
    if len(singles) > 2 and computes(together, peer):
        singles.append(("all", together))
    for case_id, r in singles:
        key = tuple(sorted(r.peer_kwargs(peer).items()))
        if key not in seen:
            seen.add(key)
            cases.append((case_id, r))
    return cases
