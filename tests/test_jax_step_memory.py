"""make_step allocates no full-size temporary, and its split passes are the one-module step.

Temporaries are read from the compiled executables (``memory_analysis()``), lowered from
shapes only (``jax.ShapeDtypeStruct``), so 1e7-element steps cost no memory here.
"""

from __future__ import annotations

import pytest

pytest.importorskip("jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from impl_jax import _core  # noqa: E402

N = 10**7


def _shapes(rule, n=N, dtype=jnp.float32):
    params = jax.ShapeDtypeStruct((n,), dtype)
    state = jax.eval_shape(lambda p: impl_jax.init(rule, p), params)
    return params, state, params


def _array_fusions(compiled) -> int:
    entry = compiled.as_text().split("ENTRY", 1)[1]
    return sum(1 for line in entry.splitlines() if " fusion(" in line and "s32[]" not in line.split("=", 1)[1][:8])


def _compiled_passes(rule):
    """(name, compiled executable) of each executable one step runs on 1e7 fp32 elements."""
    step = impl_jax.make_step(rule)
    params, state, grads = _shapes(rule)
    if not isinstance(step, _core.SplitStep):
        return [("step", step.lower(params, state, grads).compile())]
    return list(step.compiled(params, state, grads).items())


@pytest.mark.parametrize("name", list(rules.RULES))
def test_make_step_has_no_temporary_at_1e7(name):
    """No temporary of the parameters' size: any array of their shape takes at least N
    bytes (one per element, even a mask). Below that are per-step scalars: Adam's bias
    corrections ``-lr/c1`` and ``sqrt(c2)`` are computed once per step into a few bytes
    (68 at 1e7 fp32)."""
    rule = rules.preset(name, "torch")
    for pass_name, compiled in _compiled_passes(rule):
        assert compiled.memory_analysis().temp_size_in_bytes < N, pass_name


def test_adadelta_runs_one_single_output_pass_per_output():
    passes = _compiled_passes(rules.preset("adadelta", "torch"))
    assert [n for n, _ in passes] == ["params", "acc_delta", "square_avg"]
    assert [_array_fusions(c) for _, c in passes] == [1, 1, 1]


def test_weight_decay_keeps_the_one_module_step():
    """Under weight decay the passes would need the old params after the params pass."""
    step = impl_jax.make_step(rules.preset("adadelta", "torch", weight_decay=0.1))
    assert not isinstance(step, _core.SplitStep)


VARIANTS = [
    ("torch", {}),
    ("torch", {"eps_in_sqrt": False, "maximize": True}),
    ("optax", {"lr": 0.5}),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("convention, overrides", VARIANTS, ids=["torch", "eps-outside-maximize", "optax"])
def test_split_passes_equal_the_one_module_step_bitwise(convention, overrides, dtype):
    rule = rules.preset("adadelta", convention, **overrides)
    step = impl_jax.make_step(rule)
    assert isinstance(step, _core.SplitStep)
    n = _core.SPLIT_MIN_NUMEL + 3  # the passes' path, with a ragged tail
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.standard_normal(n), dtype), "b": jnp.asarray(rng.standard_normal((3, 5)), dtype)}
    split = (jax.tree.map(jnp.copy, params), impl_jax.init(rule, params))
    whole = (jax.tree.map(jnp.copy, params), impl_jax.init(rule, params))
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), dtype), params)
        split = step(*split, grads)
        whole = step.lower(*whole, grads).compile()(*whole, grads)
    assert jax.tree.structure(split) == jax.tree.structure(whole)
    for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(whole)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a.astype(jnp.float32)), np.asarray(b.astype(jnp.float32)))
    assert int(split[1].step) == 3


def test_split_passes_donate_params_and_state():
    rule = rules.preset("adadelta", "torch")
    params = jnp.ones(_core.SPLIT_MIN_NUMEL, jnp.float32)
    state, grads = impl_jax.init(rule, params), jnp.full_like(params, 0.5)
    new_params, new_state = impl_jax.make_step(rule)(params, state, grads)
    # every full-size buffer is reused in place (the int32 step count is a fresh scalar)
    assert params.is_deleted() and state.square_avg.is_deleted() and state.acc_delta.is_deleted()
    assert not grads.is_deleted()
    assert isinstance(new_state, impl_jax.AdadeltaState) and int(new_state.step) == 1


def test_the_bench_memory_column_counts_the_executables_a_step_runs():
    from bench.timing import memory

    rule = rules.preset("adadelta", "torch")
    step = impl_jax.make_step(rule)
    assert memory.jax_temp_bytes(step, *_shapes(rule))[0] == 0
    # below the split threshold the one-module step runs, with its (small) temporary
    small = _shapes(rule, n=1000)
    assert memory.jax_temp_bytes(step, *small)[0] == step.lower(*small).compile().memory_analysis().temp_size_in_bytes
