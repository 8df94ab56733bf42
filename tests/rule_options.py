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


def structural_options(rule_class) -> list[tuple[str, dict]]:
    """``(id, overrides)``: the defaults, each option alone, and everything at once."""
    fields = [f for f in dataclasses.fields(rule_class) if f.name not in _NOT_STRUCTURAL]
    flips = {f.name: not f.default for f in fields if type(f.default) is bool}
    terms = {f.name: 0.25 for f in fields if type(f.default) is float and f.default == 0.0}
    options = [("defaults", {})]
    options += [(f"{name}={value}", {name: value}) for name, value in {**flips, **terms}.items()]
    options.append(("all", {**flips, **terms}))
    return options


def option_params() -> list:
    """``pytest.param(rule_name, overrides)`` for every registered rule and option."""
    return [
        pytest.param(name, overrides, id=f"{name}-{option}")
        for name, rule_class in rules.RULES.items()
        for option, overrides in structural_options(rule_class)
    ]
