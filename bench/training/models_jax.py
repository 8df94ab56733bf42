"""The experiment's models in JAX: pure functions over a dict pytree of parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .models import PARAM_NAMES, check_model


def to_params(model: str, init: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """The NumPy initial weights as a dict of JAX arrays (same dtype; float64 needs x64 on)."""
    check_model(model)
    if tuple(init) != PARAM_NAMES[model]:
        raise ValueError(f"{model} needs parameters {PARAM_NAMES[model]}, got {tuple(init)}")
    params = {name: jnp.asarray(value) for name, value in init.items()}
    for name, value in init.items():
        if params[name].dtype != value.dtype:
            raise ValueError(
                f"{name}: JAX made {params[name].dtype} from {value.dtype}; "
                "run float64 inside `with jax.enable_x64(True):`"
            )
    return params


def apply(model: str, params: dict, X: jax.Array) -> jax.Array:
    """Logits: ``X @ W + b`` (linear) or ``sigmoid(X @ W1 + b1) @ W2 + b2`` (mlp)."""
    if model == "linear":
        return X @ params["W"] + params["b"]
    if model == "mlp":
        return jax.nn.sigmoid(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    raise ValueError(f"unknown model {model!r}")


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy over the batch (log-softmax, as torch's F.cross_entropy)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def loss(model: str, params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    return cross_entropy(apply(model, params, X), y)


def metrics(model: str, params: dict, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean cross-entropy, number of correct predictions)`` on a whole split.

    The count (int32), not the accuracy, so that accuracy is divided exactly in Python
    whatever the dtype. Jit it with ``model`` bound.
    """
    logits = apply(model, params, X)
    return cross_entropy(logits, y), jnp.sum(jnp.argmax(logits, axis=-1) == y)


def numpy_params(params: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(value).copy() for name, value in params.items()}
