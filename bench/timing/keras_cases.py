"""Keras 3 as a benchmark peer: ``keras-jax`` and ``keras-torch``.

Keras reads its backend once, at import (``KERAS_BACKEND``), so the two peers cannot share
a process: a case runs only in a pytest process whose ``KERAS_BACKEND`` is its backend, and
is skipped elsewhere with the command that runs it. ``python -m bench run`` runs the main
sweep with Keras skipped, then one process per backend for the Keras cases, and merges
their results into the one JSON (``bench/timing/keras_run.py``).

- ``keras-jax``: ``optimizer.stateless_apply(optimizer_variables, grads, params)`` under
  ``jax.jit``, params and optimizer variables donated, outputs awaited: how a JAX training
  step calls a Keras optimizer.
- ``keras-torch``: ``optimizer.apply(grads, variables)`` on ``keras.Variable``s (what
  ``Model.fit`` calls on the torch backend; Keras's torch optimizers use ``torch._foreach_*``).

Settings for the ``torch`` convention (the same update class, as for the optax peer in
``jax_cases.py``): the ``keras.optimizers`` class the rule's ``PEERS["keras"]`` names, with
the keywords it maps (``peers.peer_settings``). Keras puts eps inside the root (no setting
moves it) and its weight decay is decoupled (``weight_decay=None`` when the preset has none).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import pytest

from bench import peers

from . import cases
from .torch_cases import WARMUP_STEPS, Case

BACKENDS = ("jax", "torch")


def handles(impl: cases.Impl) -> bool:
    """Whether ``impl`` is one of the Keras peers (``cases.impls()``: keras-jax, keras-torch)."""
    return impl.variant in {f"keras-{b}" for b in BACKENDS}


def backend_of(impl: cases.Impl) -> str:
    return impl.variant.removeprefix("keras-")


def unavailable_reason(backend: str) -> str | None:
    """Why the ``keras-<backend>`` cases cannot run in this process, or None."""
    if importlib.util.find_spec("keras") is None:
        return "keras is not installed (pip install keras; it is in the [dev] extra)"
    if os.environ.get("KERAS_BACKEND") != backend:
        return (
            f"keras-{backend} needs a process of its own (Keras fixes its backend at import): "
            f"KERAS_BACKEND={backend} pytest bench --benchmark-only -k keras-{backend}; "
            "python -m bench run does this"
        )
    return None


def keras_settings(rule) -> dict:
    """``{"optimizer": <keras.optimizers class name>, **its keywords}`` for ``rule``;
    ``ValueError`` when Keras has no setting for it."""
    name, kwargs = peers.peer_settings(rule, "keras")
    return {"optimizer": name, **kwargs}


def _make_optimizer(keras, settings: dict) -> tuple:
    """(the optimizer, the settings it was made with)."""
    kwargs = dict(settings)
    cls = getattr(keras.optimizers, kwargs.pop("optimizer"))
    kwargs = peers.off_as_none(cls, kwargs)
    return cls(**kwargs), {"optimizer": settings["optimizer"], **kwargs}


@contextlib.contextmanager
def _floatx(keras, dtype: str):
    """fp64: the optimizer's learning-rate variable is created in floatx (float32 otherwise)."""
    previous = keras.config.floatx()
    keras.config.set_floatx({"fp32": "float32", "bf16": "bfloat16", "fp64": "float64"}[dtype])
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def build(spec: cases.StepSpec) -> Case:
    backend = backend_of(spec.impl)
    reason = unavailable_reason(backend)
    if reason:
        pytest.skip(reason)
    import keras

    if keras.backend.backend() != backend:
        pytest.skip(f"keras was imported with backend {keras.backend.backend()!r} in this process")
    settings = keras_settings(spec.rule_obj)
    with _floatx(keras, spec.dtype):
        return _build_jax(keras, spec, settings) if backend == "jax" else _build_torch(keras, spec, settings)


def _build_jax(keras, spec: cases.StepSpec, settings: dict) -> Case:
    import jax

    from . import jax_cases

    dev = jax_cases.jax_device(spec.device)
    jax_cases.require_dtype(spec.dtype)
    params_np, grads_np = cases.host_data(spec.size)
    with jax.default_device(dev):
        params = jax_cases.put(params_np, spec.dtype, dev)
        grads = jax_cases.put(grads_np, spec.dtype, dev)
        dtype = jax_cases.np_dtype(spec.dtype)
        optimizer, settings = _make_optimizer(keras, settings)
        optimizer.build([keras.Variable(p, dtype=dtype) for p in params_np])
        state = [jax.numpy.array(v.value, copy=True) for v in optimizer.variables]

        def _apply(params, state, grads):
            return optimizer.stateless_apply(state, grads, params)

        fn, _, donated = jax_cases.donated_loop(jax.jit(_apply, donate_argnums=(0, 1)), params, state, grads)
    return Case(fn, {"keras_backend": "jax", **settings},
                {"donated": donated, "jax_device": str(dev), "keras": keras.__version__})


def _build_torch(keras, spec: cases.StepSpec, settings: dict) -> Case:
    import torch

    from . import torch_cases

    torch_cases.require_device(spec.device)
    params_np, grads_np = cases.host_data(spec.size)
    dt = torch_cases.torch_dtype(spec.dtype)
    with torch.device(spec.device):
        variables = [keras.Variable(torch.tensor(p, dtype=dt, device=spec.device)) for p in params_np]
        grads = [torch.tensor(g, dtype=dt, device=spec.device) for g in grads_np]
        optimizer, settings = _make_optimizer(keras, settings)
        optimizer.build(variables)
    sync = torch_cases.synchroniser(spec.device)
    apply = optimizer.apply

    def fn():
        apply(grads, variables)
        sync()

    for _ in range(WARMUP_STEPS):
        fn()
    return Case(fn, {"keras_backend": "torch", **settings},
                {"optimizer": type(optimizer).__module__ + "." + type(optimizer).__qualname__, "keras": keras.__version__})
