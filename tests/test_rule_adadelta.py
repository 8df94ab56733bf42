"""Adadelta's own behaviour in its peers: optax.adadelta's default ``learning_rate=None``
(the porting guide's ``adadelta-explicit-lr`` row, README)."""

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import optax  # noqa: E402


def test_optax_adadelta_default_learning_rate_ascends():
    """optax.adadelta(learning_rate=None) skips scale_by_learning_rate, so nothing flips the
    sign: apply_updates *adds* the Adadelta step and the loss goes up (optax 0.2.x source:
    alias.adadelta -> transform.scale_by_learning_rate(None) -> identity)."""
    import jax
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
