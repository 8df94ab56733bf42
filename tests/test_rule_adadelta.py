"""Adadelta's own behaviour: its presets' values, a step worked by hand, and in its peers
optax.adadelta's default ``learning_rate=None`` (the porting guide's
``adadelta-explicit-lr`` row, README)."""

import math

import pytest

from adaptbench import rules
from adaptbench.rules import reference


def test_optax_adadelta_default_learning_rate_ascends():
    """optax.adadelta(learning_rate=None) skips scale_by_learning_rate, so nothing flips the
    sign: apply_updates *adds* the Adadelta step and the loss goes up (optax 0.2.x source:
    alias.adadelta -> transform.scale_by_learning_rate(None) -> identity)."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    def loss(p):
        return jnp.sum(p**2)

    p = jnp.array([1.0, -2.0, 3.0])
    losses = []
    for transform in (optax.adadelta(), optax.adadelta(learning_rate=1.0)):
        q, state = p, transform.init(p)
        for _ in range(100):
            updates, state = transform.update(jax.grad(loss)(q), state, q)
            q = optax.apply_updates(q, updates)
        losses.append(float(loss(q)))
    default_lr, explicit_lr = losses
    assert default_lr > float(loss(p)) > explicit_lr


def test_presets():
    assert rules.preset("adadelta", "torch") == rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True)


def test_traffic():
    assert rules.Adadelta().accesses_per_element * 4 == 28


def test_oracle_by_hand():
    rule = rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6)
    p, s = reference.run(rule, 1.0, [0.5])
    v = 0.1 * 0.25
    d = math.sqrt(1e-6) / math.sqrt(v + 1e-6) * 0.5
    assert p == pytest.approx(1 - d, rel=1e-15)
    assert s["acc_delta"] == pytest.approx(0.1 * d * d, rel=1e-15)
