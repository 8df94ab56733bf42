"""Each rule's structural options, read off its dataclass (for the tests that step every
option of every registered rule: ``test_torch_stand_in_device``, ``test_torch_compiled_step``).

A structural option selects a different graph: every bool switched from its default, every
numeric field whose default 0 leaves a term out (``weight_decay``, ``lr_decay``,
``momentum``, ``initial_accumulator_value``, ``initial_scale``) set nonzero, and all of them
at once. A rule added to the registry is covered without an edit.
"""

from __future__ import annotations

import dataclasses

import pytest

from adaptbench import rules

# complex_as_real changes nothing for real parameters.
_NOT_STRUCTURAL = {"complex_as_real"}


def completed(make, overrides: dict, terms: dict) -> dict | None:
    """``overrides`` as a valid rule takes them (``make(overrides)`` raises no
    ``ValueError``): as they are, else with one more of ``terms`` switched on (SGD's
    nesterov needs momentum), else without one of the terms among them (nesterov refuses
    dampening); None when none of these is valid."""
    tries = [overrides]
    tries += [{**overrides, name: value} for name, value in terms.items() if name not in overrides]
    tries += [{k: v for k, v in overrides.items() if k != name} for name in terms if name in overrides]
    for candidate in tries:
        try:
            make(candidate)
        except ValueError:
            continue
        return candidate
    return None


def structural_options(rule_class) -> list[tuple[str, dict]]:
    """``(id, overrides)``: the defaults, each option alone (with a term it needs,
    :func:`completed`), and everything at once (less a term it refuses)."""
    fields = [f for f in dataclasses.fields(rule_class) if f.name not in _NOT_STRUCTURAL]
    flips = {f.name: not f.default for f in fields if type(f.default) is bool}
    terms = {f.name: 0.25 for f in fields if type(f.default) is float and f.default == 0.0}

    def make(overrides):
        return rule_class(**overrides)

    options = [("defaults", {})]
    for name, value in {**flips, **terms}.items():
        overrides = completed(make, {name: value}, terms)
        if overrides is not None:
            options.append((f"{name}={value}", overrides))
    options.append(("all", completed(make, {**flips, **terms}, terms)))
    return options


def option_params() -> list:
    """``pytest.param(rule_name, overrides)`` for every registered rule and option."""
    return [
        pytest.param(name, overrides, id=f"{name}-{option}")
        for name, rule_class in rules.RULES.items()
        for option, overrides in structural_options(rule_class)
    ]
