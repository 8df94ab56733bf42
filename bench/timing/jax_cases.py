"""Build a warmed-up, synchronised one-step callable for a jax implementation.

Every jax case is one jitted call with params and optimizer state donated
(``donate_argnums=(0, 1)``); the returned params and state are kept in a closure and fed to
the next call, and the call waits for them (``jax.block_until_ready``). Compilation and
warm-up happen here, before the ``benchmark`` fixture sees the callable.

The optax peer is the factory the rule's ``PEERS["optax"]`` names, with the keywords it
maps for the ``torch`` convention (``peers.peer_settings``): the same update class (same
state tensors, same memory traffic, same arithmetic up to where eps sits, which optax may
fix inside the root).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bench.peers import optax_peer

from . import cases, memory
from .torch_cases import WARMUP_STEPS, Case


def jax_device(device: str):
    import jax

    platform = {"cpu": "cpu", "cuda": "gpu"}[device]
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if not devices:
        pytest.skip("no CUDA device" if device == "cuda" else f"jax has no {platform} device")
    return devices[0]


def np_dtype(dtype: str):
    import jax.numpy as jnp

    return {"fp32": np.float32, "bf16": jnp.bfloat16, "fp64": np.float64}[dtype]


def require_dtype(dtype: str) -> None:
    import jax

    if dtype == "fp64" and not jax.config.jax_enable_x64:
        pytest.skip("jax fp64 needs jax_enable_x64 (set by ADAPTBENCH_FULL=1)")


def put(arrays, dtype: str, dev):
    import jax

    # np.array(copy=True): jax owns its buffer outright, so donation is never refused.
    return [jax.device_put(np.array(a, dtype=np_dtype(dtype), copy=True), dev) for a in arrays]


def _impl_jax():
    try:
        import impl_jax
    except ModuleNotFoundError as exc:
        if exc.name != "impl_jax":
            raise
        pytest.skip("impl_jax is not written yet")
    return impl_jax


def _jitted_transformation(tx):
    import jax
    import optax

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def build(spec: cases.StepSpec) -> Case:
    import jax

    dev = jax_device(spec.device)
    require_dtype(spec.dtype)
    with jax.default_device(dev):  # optimizer states and constants land beside the params
        case = _build(spec, dev)
    # jit's cache is keyed on the default-device setting too: calls outside the context
    # above would compile again, and that first call (~0.1 s) made pytest-benchmark's
    # calibration settle on ~10 rounds. Warm up where the benchmark will call.
    for _ in range(WARMUP_STEPS):
        case.fn()
    return case


def donated_loop(step, params, state, grads):
    """``(fn, carry, donated)``: ``fn()`` runs one ``step(params, state, grads)`` of a jitted,
    donating step, keeps the returned params and state in ``carry`` for the next call and
    waits for them; warmed up already. ``donated``: whether the first params were consumed."""
    import jax

    carry = [params, state]

    def fn():
        p, s = step(carry[0], carry[1], grads)
        carry[0], carry[1] = p, s
        jax.block_until_ready((p, s))

    first = carry[0][0]
    for _ in range(WARMUP_STEPS):
        fn()
    return fn, carry, bool(first.is_deleted())


def _build(spec: cases.StepSpec, dev) -> Case:
    import jax

    params_np, grads_np = cases.host_data(spec.size)
    params = put(params_np, spec.dtype, dev)
    grads = put(grads_np, spec.dtype, dev)
    rule = spec.rule_obj
    if spec.impl.variant == "make_step":
        impl_jax = _impl_jax()
        step = impl_jax.make_step(rule)
        state = impl_jax.init(rule, params)
        settings = {"impl": "make_step", **rule.as_dict()}
    elif spec.impl.variant == "transformation":
        impl_jax = _impl_jax()
        tx = impl_jax.transformation(rule)
        state = tx.init(params)
        step = _jitted_transformation(tx)
        settings = {"impl": "transformation", **rule.as_dict()}
    elif spec.impl.variant == "empty":
        state = _impl_jax().init(rule, params)
        step = jax.jit(lambda params, state, grads: (params, state), donate_argnums=(0, 1))
        settings = {"impl": "empty"}
    elif spec.impl.variant == "optax":
        tx, settings = optax_peer(rule)
        state = tx.init(params)
        step = _jitted_transformation(tx)
    else:
        raise ValueError(f"unknown jax variant {spec.impl.variant!r}")

    fn, carry, donated = donated_loop(step, params, state, grads)
    got = carry[0][0].dtype
    if got != np.dtype(np_dtype(spec.dtype)):
        raise AssertionError(f"{spec.id}: params came back as {got}, expected {spec.dtype}")
    return Case(fn, settings, {"donated": donated, "jax_device": str(dev)},
                temp_bytes=lambda: memory.jax_temp_bytes(step, carry[0], carry[1], grads))
