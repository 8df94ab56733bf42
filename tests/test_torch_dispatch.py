"""The impl table is the one dispatcher: every name, built-in or registered, goes through it."""

from __future__ import annotations

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import functional


@pytest.mark.parametrize("name", ["loop", "foreach", "auto"])
def test_replacing_a_built_in_impl_takes_effect(monkeypatch, name):
    """``register_impl(name, fn, replace=True)`` is used for built-in names too (``plan``
    once special-cased auto and loop before the table and ignored a replacement)."""
    monkeypatch.setattr(functional, "_IMPL_TABLE", dict(functional._IMPL_TABLE))
    calls = []

    def mine(rule, params, grads, states):
        calls.append(len(params))
        functional._foreach(rule, params, grads, states)

    impl_torch.register_impl(name, mine, replace=True)
    rule = rules.preset(next(iter(rules.RULES)))
    params = [torch.zeros(3), torch.zeros(2)]
    states = [impl_torch.init_state(rule, p) for p in params]
    impl_torch.step(rule, params, [torch.ones(3), torch.ones(2)], states, impl=name)
    assert calls == [2]


def test_an_unknown_impl_names_the_registered_ones():
    rule = rules.preset(next(iter(rules.RULES)))
    with pytest.raises(ValueError, match="impl must be one of"):
        impl_torch.step(rule, [torch.zeros(1)], [torch.ones(1)], [impl_torch.init_state(rule, torch.zeros(1))],
                        impl="nope")
