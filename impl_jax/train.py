"""Whole training steps in one jitted call, and many steps in one ``lax.scan``.

For a tiny model (the tutorial's 15-parameter softmax regression) a step is a handful of
microsecond-sized kernels, and what costs is the dispatch around them: a separate
jitted gradient and jitted update pay the call overhead twice per step (about 14 us
each on the 2-core CPU, see ``bench/training/bench_training.py``), and a Python loop pays it once
per step. Here forward, backward and update are traced into one function, and
:func:`make_train_loop` runs any number of steps inside one ``lax.scan``, so the call
overhead is paid once per call, not once per step.

- :func:`make_train_step`: ``step(params, state, batch) -> (params, state, loss)``.
- :func:`make_train_loop`: ``run(params, state, data, batches) -> (params, state, losses)``;
  ``batches`` is an integer array ``(steps, batch_size)`` of row indices into every leaf
  of ``data`` (an epoch's mini-batch order, or several epochs' concatenated).

``optimizer`` is a ``rules`` object (``rules.preset("rmsprop", "seed")``), whose update
is the one of :func:`impl_jax.make_step` (each new parameter rounded once), or any
``optax.GradientTransformation`` (``impl_jax.rmsprop(...)``, an ``optax.chain``, optax's
own), applied with ``optax.apply_updates``. Both functions are jitted and donate
``params`` and ``state``: thread the returned ones, never reuse the arguments.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _core
from .transform import init, spec_for

__all__ = ["make_train_step", "make_train_loop", "init_optimizer"]

LossFn = Callable[[Any, Any], jax.Array]


def _updater(optimizer) -> tuple[Callable, Callable]:
    """``(init(params) -> state, apply(params, state, grads) -> (params, state))``."""
    if isinstance(optimizer, optax.GradientTransformation):

        def apply(params, state, grads):
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        return optimizer.init, apply
    try:
        spec = spec_for(optimizer)
    except TypeError:
        raise TypeError(
            f"optimizer must be a rules object of a registered rule ({sorted(_core.SPECS)}) or an "
            f"optax.GradientTransformation, got {type(optimizer).__name__}"
        ) from None

    def apply(params, state, grads):
        return _core.apply_step(spec, optimizer, params, state, grads)

    return functools.partial(init, optimizer), apply


def init_optimizer(optimizer, params):
    """The optimizer state before the first step (``impl_jax.init`` or ``optimizer.init``)."""
    return _updater(optimizer)[0](params)


def _check_loss_fn(loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch), got {type(loss_fn).__name__}")


def _one_step(loss_fn: LossFn, apply: Callable):
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(params, state, batch):
        loss, grads = value_and_grad(params, batch)
        params, state = apply(params, state, grads)
        return params, state, loss

    return step


def make_train_step(loss_fn: LossFn, optimizer):
    """``step(params, state, batch) -> (params, state, loss)``, one jitted call per step.

    ``loss_fn(params, batch)`` returns the scalar loss; ``loss`` is its value at the
    parameters before the update. ``state`` comes from :func:`init_optimizer`.
    ``params`` and ``state`` are donated.
    """
    _check_loss_fn(loss_fn)
    step = _one_step(loss_fn, _updater(optimizer)[1])
    return jax.jit(step, donate_argnums=(0, 1))


def _gather(x, rows):
    # An index past the end would be clamped by XLA's gather; floating data reads NaN
    # there instead, so a bad index shows up as a NaN loss rather than a wrong row.
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.take(x, rows, axis=0, mode="fill", fill_value=jnp.nan)
    return jnp.take(x, rows, axis=0, mode="clip")


def _rows(data) -> int:
    """The common first-axis length of ``data``'s arrays (static under ``jit``)."""
    rows = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(data)}
    if len(rows) != 1 or None in rows:
        raise ValueError(
            "data must be a pytree of arrays sharing their first axis (rows), got first-axis "
            f"lengths {sorted(rows, key=str)}"
        )
    return rows.pop()


def _check_batches(batches) -> None:
    """Dtype and shape of ``batches`` (static under ``jit``: checked when tracing)."""
    dtype, shape = jnp.result_type(batches), jnp.shape(batches)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"batches must hold integer row indices, got dtype {dtype}")
    if len(shape) != 2 or shape[0] == 0:
        raise ValueError(f"batches must have shape (steps >= 1, batch_size), got {shape}")


def _check_rows_in_range(batches: np.ndarray, data) -> None:
    if batches.size and np.issubdtype(batches.dtype, np.integer):
        n_rows = _rows(data)
        low, high = batches.min(), batches.max()
        if low < 0 or high >= n_rows:
            raise ValueError(f"batches holds row indices in [{low}, {high}], but data has {n_rows} rows")


def make_train_loop(loss_fn: LossFn, optimizer):
    """``run(params, state, data, batches) -> (params, state, losses)``: every step in one call.

    Step ``k`` trains on ``jax.tree.map(lambda x: x[batches[k]], data)``: ``data`` is a
    pytree of arrays sharing their first axis (rows), ``batches`` an integer array
    ``(steps, batch_size)``. ``losses[k]`` is the loss before step ``k``'s update. The steps
    run in one ``lax.scan`` inside one jitted function, with ``params`` and ``state``
    donated; a new ``batches`` shape compiles once more.

    ``batches`` given as NumPy is bounds-checked before the call (``ValueError``); a
    ``jax.Array`` is not (that would cost a device round trip per call): an out-of-range
    index reads NaN from floating data (a NaN loss) and clamps integer data.
    """
    _check_loss_fn(loss_fn)
    step = _one_step(loss_fn, _updater(optimizer)[1])

    def run(params, state, data, batches):
        _rows(data)
        _check_batches(batches)

        def body(carry, rows):
            params, state = carry
            batch = jax.tree.map(lambda x: _gather(x, rows), data)
            params, state, loss = step(params, state, batch)
            return (params, state), loss

        (params, state), losses = jax.lax.scan(body, (params, state), batches)
        return params, state, losses

    jitted = jax.jit(run, donate_argnums=(0, 1))

    def train_loop(params, state, data, batches):
        # Shapes and dtypes are checked once per compilation, inside ``run``. Checking them
        # here on every call measured ~30 us more per call on the 2-core CPU (a 5-step Iris
        # epoch takes ~70 us), although the checks alone time at ~3 us; the cause was not
        # found. Only host indices get their values checked here.
        if isinstance(batches, (np.ndarray, list, tuple)):
            batches = np.asarray(batches)
            _check_rows_in_range(batches, data)
        return jitted(params, state, data, batches)

    return train_loop
