"""RMSprop's own behaviour, beyond what the registry-driven suites check for every rule:
its presets' values, its state layout under its switches and steps worked by hand."""

import math

import pytest

from adaptbench import rules
from adaptbench.rules import reference


def test_presets():
    assert rules.preset("rmsprop", "seed") == rules.RMSprop(lr=0.02, alpha=0.9, eps=1e-6, eps_in_sqrt=True)
    assert rules.preset("rmsprop", "optax") == rules.RMSprop(
        alpha=0.9, eps=1e-8, eps_in_sqrt=True, complex_as_real=False
    )


def test_state_and_traffic():
    assert rules.RMSprop().accesses_per_element * 4 == 20
    assert rules.RMSprop(centered=True, momentum=0.9).state_names == ("square_avg", "grad_avg", "momentum_buffer")
    assert rules.RMSprop(centered=True, momentum=0.9).accesses_per_element * 4 == 36


# The oracle against steps worked by hand (scalar parameter p = 1, gradient g = 0.5).


def test_oracle_centered_momentum_by_hand():
    rule = rules.RMSprop(lr=0.01, alpha=0.9, eps=1e-8, centered=True, momentum=0.5)
    p, s = reference.run(rule, 1.0, [0.5, 0.5])
    v1, m1 = 0.1 * 0.25, 0.1 * 0.5
    b1 = 0.5 / (math.sqrt(v1 - m1 * m1) + 1e-8)
    v2, m2 = 0.9 * v1 + 0.1 * 0.25, 0.9 * m1 + 0.1 * 0.5
    b2 = 0.5 * b1 + 0.5 / (math.sqrt(v2 - m2 * m2) + 1e-8)
    assert p == pytest.approx(1 - 0.01 * b1 - 0.01 * b2, rel=1e-14)
    assert s["momentum_buffer"] == pytest.approx(b2, rel=1e-14)


def test_oracle_weight_decay_and_maximize_by_hand():
    base = rules.RMSprop(lr=0.1, weight_decay=0.1)
    up, _ = reference.run(base.replace(maximize=True), 1.0, [0.5])
    down, _ = reference.run(base, 1.0, [-0.5])
    # maximize negates g before weight decay, as torch.optim does
    g = -0.5 + 0.1
    expected = 1 - 0.1 * g / (math.sqrt(0.01 * g * g) + 1e-8)
    assert up == pytest.approx(expected, rel=1e-14)
    assert down == pytest.approx(expected, rel=1e-14)
