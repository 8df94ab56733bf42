"""impl_jax's API contracts: optax equivalence, chaining, make_step, donation, pytrees, validation.

Cross-framework and oracle parity live in tests/test_parity.py; here impl_jax is checked
against optax's own factories and against itself. Small arrays, a few steps, CPU-fast.
"""

from __future__ import annotations

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from impl_jax import _core  # noqa: E402

STEPS = 5


@pytest.fixture
def x64():
    """float64 needs JAX's 64-bit mode; switched on for the test only, never globally."""
    with jax.enable_x64(True):
        yield


def _dtype_ctx(dtype: str):
    return jax.enable_x64(True) if dtype == "float64" else _null()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _params(dtype, seed=0):
    """A dict with a nested tuple: a matrix, a vector, a scalar."""
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.standard_normal((4, 3)), dtype),
        "inner": (jnp.asarray(rng.standard_normal(5), dtype), {"b": jnp.asarray(rng.standard_normal(()), dtype)}),
    }


def _grads(params, k, seed=1):
    rng = np.random.default_rng(seed + 100 * k)
    scale = 2.0 if k % 3 == 0 else 0.1  # some large steps, some small
    return jax.tree.map(lambda p: jnp.asarray(scale * rng.standard_normal(p.shape), p.dtype), params)


def _to64(x):
    return np.asarray(jnp.asarray(x, jnp.float32) if x.dtype == jnp.bfloat16 else x, dtype=np.float64)


def _assert_tree_close(actual, expected, dtype, bitwise=False):
    tol = rules.tolerance(dtype)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.dtype == e.dtype
        if bitwise:
            np.testing.assert_array_equal(_to64(a), _to64(e))
        else:
            np.testing.assert_allclose(_to64(a), _to64(e), rtol=tol.rtol, atol=tol.atol)


def _bf16_ulp(x):
    """Spacing of bfloat16 numbers at |x| (8-bit significand)."""
    x = np.abs(np.asarray(x, np.float64))
    return np.exp2(np.floor(np.log2(np.maximum(x, 2.0**-126))) - 7)


def _jit_apply(tx):
    """update + apply_updates as one jitted function (how training code runs it)."""

    def run(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    return jax.jit(run)


# --------------------------------------------------------------------------------------
# optax equivalence (optax convention). NOT bitwise, by design: impl_jax follows torch's
# rounding sequence (v*alpha rounded, then fma((1-alpha)*g, g, .); a true division by the
# root where optax multiplies by lax.rsqrt, which XLA:CPU does not round correctly; and
# the momentum buffer traced before the lr scaling), so it is asserted within
# rules.tolerance(dtype) after every step of an un-synchronised run. bfloat16 is left out:
# optax rounds its hyperparameters to bf16 (decay 0.9 -> 0.90234375), impl_jax keeps
# them in float32 like torch, so the two bf16 trajectories are different approximations.
# --------------------------------------------------------------------------------------

OPTAX_CASES = {
    "adagrad": (
        rules.preset("adagrad", "optax"),
        lambda r: optax.adagrad(r.lr, initial_accumulator_value=r.initial_accumulator_value, eps=r.eps),
    ),
    "adagrad-lr0.1": (
        rules.preset("adagrad", "optax", lr=0.1),
        lambda r: optax.adagrad(r.lr, initial_accumulator_value=r.initial_accumulator_value, eps=r.eps),
    ),
    "adadelta": (rules.preset("adadelta", "optax"), lambda r: optax.adadelta(learning_rate=1.0, rho=r.rho, eps=r.eps)),
    "adadelta-lr0.5": (
        rules.preset("adadelta", "optax", lr=0.5),
        lambda r: optax.adadelta(learning_rate=r.lr, rho=r.rho, eps=r.eps),
    ),
    "rmsprop": (rules.preset("rmsprop", "optax"), lambda r: optax.rmsprop(r.lr, decay=r.alpha, eps=r.eps)),
    "rmsprop-centered": (
        rules.preset("rmsprop", "optax", centered=True),
        lambda r: optax.rmsprop(r.lr, decay=r.alpha, eps=r.eps, centered=True),
    ),
    # optax traces the lr-scaled update; torch (and impl_jax) the unscaled one: equal for constant lr.
    "rmsprop-momentum": (
        rules.preset("rmsprop", "optax", momentum=0.9),
        lambda r: optax.rmsprop(r.lr, decay=r.alpha, eps=r.eps, momentum=r.momentum),
    ),
    "rmsprop-centered-momentum": (
        rules.preset("rmsprop", "optax", centered=True, momentum=0.9),
        lambda r: optax.rmsprop(r.lr, decay=r.alpha, eps=r.eps, centered=True, momentum=r.momentum),
    ),
}

_FACTORIES = {"adagrad": impl_jax.adagrad, "adadelta": impl_jax.adadelta, "rmsprop": impl_jax.rmsprop}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_factory_matches_optax(case, dtype):
    rule, optax_factory = OPTAX_CASES[case]
    with _dtype_ctx(dtype):
        ours = _FACTORIES[rule.name](**rule.as_dict())  # the keywords the rules objects carry
        theirs = optax_factory(rule)
        run_ours, run_theirs = _jit_apply(ours), _jit_apply(theirs)
        params = _params(dtype)
        p_a, s_a, p_b, s_b = params, ours.init(params), params, theirs.init(params)
        for k in range(STEPS):
            grads = _grads(params, k)
            p_a, s_a, u_a = run_ours(p_a, s_a, grads)
            p_b, s_b, u_b = run_theirs(p_b, s_b, grads)
            _assert_tree_close(u_a, u_b, dtype)
            _assert_tree_close(p_a, p_b, dtype)
        assert int(s_a.step) == STEPS


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adagrad_mask_matches_optax_where_accumulator_is_zero(dtype):
    """optax's scale_by_rss gives 0 where the sum is 0; torch's formula gives 0/0 = NaN there."""
    with _dtype_ctx(dtype):
        params = {"w": jnp.asarray([1.0, 2.0, 3.0], dtype)}
        grads = {"w": jnp.asarray([0.0, 0.5, -0.5], dtype)}
        masked = impl_jax.adagrad(lr=0.1, initial_accumulator_value=0.0, eps=0.0, eps_in_sqrt=True, mask_zero_accumulator=True)
        u, _ = masked.update(grads, masked.init(params), params)
        u_optax, _ = optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0).update(
            grads, optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0).init(params), params
        )
        assert float(u["w"][0]) == 0.0 and float(u_optax["w"][0]) == 0.0
        _assert_tree_close(u, u_optax, dtype)
        torch_like = impl_jax.adagrad(lr=0.1, eps=0.0)
        u, _ = torch_like.update(grads, torch_like.init(params), params)
        assert np.isnan(float(u["w"][0])) and np.isfinite(np.asarray(u["w"][1:])).all()


# --------------------------------------------------------------------------------------
# Chaining, rules objects, schedules
# --------------------------------------------------------------------------------------


def test_usable_in_optax_chain():
    """clip_by_global_norm then impl_jax.rmsprop == clipping by hand, then rmsprop (bitwise)."""
    chained = optax.chain(optax.clip_by_global_norm(1.0), impl_jax.rmsprop(lr=0.05, momentum=0.5, weight_decay=0.01))
    alone = impl_jax.rmsprop(lr=0.05, momentum=0.5, weight_decay=0.01)
    clip = optax.clip_by_global_norm(1.0)
    params = _params(jnp.float32)
    p_a, s_a = params, chained.init(params)
    p_b, s_b = params, alone.init(params)
    update_a, update_b, update_clip = jax.jit(chained.update), jax.jit(alone.update), jax.jit(clip.update)
    for k in range(STEPS):
        grads = _grads(params, k)
        u_a, s_a = update_a(grads, s_a, p_a)
        clipped, _ = update_clip(grads, clip.init(params))
        u_b, s_b = update_b(clipped, s_b, p_b)
        _assert_tree_close(u_a, u_b, "float32", bitwise=True)
        p_a, p_b = optax.apply_updates(p_a, u_a), optax.apply_updates(p_b, u_b)
    assert isinstance(s_a[1], impl_jax.RMSpropState)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
        ("adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.1, eps_in_sqrt=False)),
        ("rmsprop", dict(lr=0.05, alpha=0.9, centered=True, momentum=0.5, maximize=True)),
    ],
    ids=["adagrad", "adadelta", "rmsprop"],
)
def test_transformation_of_rule_equals_factory(name, kwargs):
    rule = rules.preset(name, "torch", **kwargs)
    a, b = impl_jax.transformation(rule), _FACTORIES[name](**kwargs)
    params = _params(jnp.float32)
    s_a, s_b = a.init(params), b.init(params)
    for k in range(3):
        grads = _grads(params, k)
        u_a, s_a = a.update(grads, s_a, params)
        u_b, s_b = b.update(grads, s_b, params)
        _assert_tree_close(u_a, u_b, "float32", bitwise=True)
    _assert_tree_close(s_a, s_b, "float32", bitwise=True)


SCHEDULE_CASES = {
    "adagrad": rules.preset("adagrad", "torch"),
    "adagrad-lr_decay": rules.preset("adagrad", "torch", lr_decay=0.1),
    "adadelta": rules.preset("adadelta", "torch"),
    "rmsprop-momentum": rules.preset("rmsprop", "torch", momentum=0.9, centered=True),
}


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedule_lr(case):
    """A schedule is evaluated at the pre-increment count: step k uses schedule(k), bitwise.

    The states do not depend on lr (torch traces the unscaled momentum), so one state can
    feed both the scheduled transformation and a constant-lr one rebuilt with schedule(k).
    """
    rule = SCHEDULE_CASES[case]
    schedule = optax.exponential_decay(init_value=0.1, transition_steps=1, decay_rate=0.5)
    scheduled = impl_jax.transformation(rule, lr=schedule)
    params = _params(jnp.float32)
    state = scheduled.init(params)
    for k in range(4):
        grads = _grads(params, k)
        u_sched, new_state = jax.jit(scheduled.update)(grads, state, params)
        constant = impl_jax.transformation(rule.replace(lr=float(schedule(k))))
        u_const, const_state = jax.jit(constant.update)(grads, state, params)
        _assert_tree_close(u_sched, u_const, "float32", bitwise=True)
        _assert_tree_close(new_state, const_state, "float32", bitwise=True)
        state, params = new_state, optax.apply_updates(params, u_sched)
    assert int(state.step) == 4


def test_factory_accepts_schedule_like_optax():
    schedule = optax.linear_schedule(0.1, 0.01, transition_steps=4)
    ours, theirs = impl_jax.rmsprop(lr=schedule, alpha=0.9, eps_in_sqrt=True), optax.rmsprop(schedule, decay=0.9)
    params = _params(jnp.float32)
    p_a, s_a, p_b, s_b = params, ours.init(params), params, theirs.init(params)
    run_a, run_b = _jit_apply(ours), _jit_apply(theirs)
    for k in range(STEPS):
        grads = _grads(params, k)
        p_a, s_a, _ = run_a(p_a, s_a, grads)
        p_b, s_b, _ = run_b(p_b, s_b, grads)
        _assert_tree_close(p_a, p_b, "float32")


# --------------------------------------------------------------------------------------
# make_step
# --------------------------------------------------------------------------------------

STEP_CASES = {
    "adagrad-torch": rules.preset("adagrad", "torch", weight_decay=0.1),
    "adagrad-optax": rules.preset("adagrad", "optax"),
    "adagrad-lr_decay": rules.preset("adagrad", "torch", lr_decay=0.05),
    "adadelta-torch": rules.preset("adadelta", "torch"),
    "adadelta-lr0.5-eps_outside": rules.preset("adadelta", "torch", lr=0.5, eps_in_sqrt=False),
    "rmsprop-torch": rules.preset("rmsprop", "torch"),
    "rmsprop-centered-momentum-wd": rules.preset("rmsprop", "torch", centered=True, momentum=0.9, weight_decay=0.1),
    "rmsprop-optax-maximize": rules.preset("rmsprop", "optax", maximize=True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("case", list(STEP_CASES))
def test_make_step_equals_transformation_plus_apply_updates(case, dtype):
    """Bitwise for float32/float64 (one jitted update + apply_updates, as training runs it).

    For bfloat16 make_step rounds ``p + delta`` once from float32, as torch's fused
    ``addcdiv_`` does, while the transformation hands out a bf16 delta: one rounding more,
    so there the two differ by at most one bf16 ulp of the delta plus one of the result
    (a tolerance relative to the result would not do: ``p + delta`` may cancel). The
    states are bitwise equal in every dtype.
    """
    rule = STEP_CASES[case]
    jdtype = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}[dtype]
    with _dtype_ctx(dtype):
        step = impl_jax.make_step(rule)
        run = _jit_apply(impl_jax.transformation(rule))
        params = _params(jdtype)
        p_a, s_a = jax.tree.map(jnp.copy, params), impl_jax.init(rule, params)
        p_b, s_b = params, impl_jax.init(rule, params)
        for k in range(STEPS):
            grads = _grads(params, k)
            p_a, s_a = step(p_a, s_a, grads)
            p_b, s_b, updates = run(p_b, s_b, grads)
            if dtype == "bfloat16":
                for a, b, u in zip(*map(jax.tree.leaves, (p_a, p_b, updates))):
                    a, b, u = _to64(a), _to64(b), _to64(u)
                    assert np.all(np.abs(a - b) <= _bf16_ulp(u) + _bf16_ulp(a))
                p_b = jax.tree.map(jnp.copy, p_a)  # re-synchronise: single-step differences only
            else:
                _assert_tree_close(p_a, p_b, dtype, bitwise=True)
            _assert_tree_close(s_a, s_b, dtype, bitwise=True)
        assert s_a.step.dtype == jnp.int32 and int(s_a.step) == STEPS
        for leaf, ref in zip(jax.tree.leaves(p_a), jax.tree.leaves(params)):
            assert leaf.dtype == ref.dtype and leaf.shape == ref.shape


@pytest.mark.parametrize("name", ["adagrad", "adadelta", "rmsprop"])
def test_make_step_donates_params_and_state(name):
    rule = rules.preset(name, "torch", **({"centered": True, "momentum": 0.9} if name == "rmsprop" else {}))
    step = impl_jax.make_step(rule)
    params = _params(jnp.float32)
    state = impl_jax.init(rule, params)
    grads = _grads(params, 0)
    new_params, new_state = step(params, state, grads)
    assert all(x.is_deleted() for x in jax.tree.leaves(params))
    assert all(x.is_deleted() for x in jax.tree.leaves(state))
    assert not any(x.is_deleted() for x in jax.tree.leaves(grads))
    new_params, new_state = step(new_params, new_state, grads)  # threading the outputs works
    assert int(new_state.step) == 2


def test_pytree_leaves_are_independent():
    """A tree steps exactly as its leaves would one at a time, and keeps its structure."""
    rule = rules.preset("rmsprop", "torch", centered=True, momentum=0.5)
    params = _params(jnp.float32)
    step = impl_jax.make_step(rule)
    out, state = step(jax.tree.map(jnp.copy, params), impl_jax.init(rule, params), _grads(params, 0))
    assert jax.tree.structure(out) == jax.tree.structure(params)
    for name in ("square_avg", "grad_avg", "momentum_buffer"):
        assert jax.tree.structure(getattr(state, name)) == jax.tree.structure(params)
    for leaf_p, leaf_g, leaf_out in zip(jax.tree.leaves(params), jax.tree.leaves(_grads(params, 0)), jax.tree.leaves(out)):
        single, _ = step(jnp.copy(leaf_p), impl_jax.init(rule, leaf_p), leaf_g)
        np.testing.assert_array_equal(np.asarray(single), np.asarray(leaf_out))


# --------------------------------------------------------------------------------------
# State, dtypes, x64
# --------------------------------------------------------------------------------------


def test_state_fields_follow_torch_names():
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.bfloat16)}
    s = impl_jax.init(rules.preset("adagrad", "torch", initial_accumulator_value=0.25), params)
    assert isinstance(s, impl_jax.AdagradState) and s._fields == ("step", "sum")
    assert s.step.dtype == jnp.int32 and s.step.shape == () and int(s.step) == 0
    assert s.sum["a"].dtype == jnp.float32 and s.sum["b"].dtype == jnp.bfloat16
    assert float(s.sum["a"][0]) == 0.25
    s = impl_jax.init(rules.preset("adadelta", "torch"), params)
    assert s._fields == ("step", "square_avg", "acc_delta")
    s = impl_jax.init(rules.preset("rmsprop", "torch"), params)
    assert s._fields == ("step", "square_avg", "grad_avg", "momentum_buffer")
    assert s.grad_avg is None and s.momentum_buffer is None
    s = impl_jax.init(rules.preset("rmsprop", "torch", centered=True, momentum=0.1), params)
    assert s.grad_avg is not None and s.momentum_buffer is not None


def test_mixed_dtype_tree_keeps_each_leaf_dtype():
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    tx = impl_jax.rmsprop(momentum=0.5)
    state = tx.init(params)
    updates, state = tx.update(jax.tree.map(lambda p: p * 0.5, params), state, params)
    assert updates["a"].dtype == jnp.float32 and updates["b"].dtype == jnp.bfloat16
    assert state.momentum_buffer["b"].dtype == jnp.bfloat16


def test_float64_under_x64(x64):
    params = {"w": jnp.asarray(np.linspace(-1, 1, 7), jnp.float64)}
    assert params["w"].dtype == jnp.float64
    rule = rules.preset("adadelta", "torch")
    new, state = impl_jax.make_step(rule)(jax.tree.map(jnp.copy, params), impl_jax.init(rule, params), params)
    assert new["w"].dtype == jnp.float64 and state.acc_delta["w"].dtype == jnp.float64


def test_import_does_not_enable_x64():
    assert not jax.config.jax_enable_x64


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory,kwargs,argument",
    [
        (impl_jax.adagrad, dict(lr=-1.0), "lr"),
        (impl_jax.adagrad, dict(eps=-1e-10), "eps"),
        (impl_jax.adagrad, dict(lr_decay=-0.1), "lr_decay"),
        (impl_jax.adagrad, dict(initial_accumulator_value=-0.1), "initial_accumulator_value"),
        (impl_jax.adagrad, dict(weight_decay=float("nan")), "weight_decay"),
        (impl_jax.adadelta, dict(rho=1.5), "rho"),
        (impl_jax.adadelta, dict(lr=float("inf")), "lr"),
        (impl_jax.rmsprop, dict(alpha=-0.1), "alpha"),
        (impl_jax.rmsprop, dict(momentum=-0.9), "momentum"),
        (impl_jax.rmsprop, dict(weight_decay=-1), "weight_decay"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_invalid_hyperparameters_name_the_argument(factory, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [impl_jax.adagrad, impl_jax.adadelta, impl_jax.rmsprop], ids=lambda f: f.__name__)
def test_non_bool_switch_is_a_type_error(factory):
    with pytest.raises(TypeError, match="maximize"):
        factory(maximize=1)


@pytest.mark.parametrize("factory", [impl_jax.adagrad, impl_jax.adadelta, impl_jax.rmsprop], ids=lambda f: f.__name__)
def test_weight_decay_without_params_is_a_clear_error(factory):
    tx = factory(weight_decay=0.1)
    params = _params(jnp.float32)
    with pytest.raises(ValueError, match="weight_decay.*params"):
        tx.update(params, tx.init(params))
    tx = factory()  # without weight decay params are optional, as in optax
    tx.update(params, tx.init(params))


def test_wrong_inputs_are_rejected():
    with pytest.raises(TypeError, match="rules"):
        impl_jax.transformation({"lr": 0.1})
    with pytest.raises(TypeError, match="rules"):
        impl_jax.make_step("adagrad")
    with pytest.raises(TypeError, match="floating"):
        impl_jax.init(rules.preset("adagrad"), {"w": jnp.arange(3)})
    with pytest.raises(ValueError, match="lr"):
        impl_jax.transformation(rules.preset("adagrad"), lr=-0.5)


# --------------------------------------------------------------------------------------
# Guards on the XLA behaviour the rounding sequence relies on (see impl_jax/_core.py)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adagrad", "adadelta", "rmsprop"])
def test_no_rsqrt_in_compiled_step(name):
    """``a / sqrt(b)`` stays a division by a correctly rounded root (no ``rsqrt`` rewrite)."""
    rule = rules.preset(name, "optax")  # eps inside the root: the rewritable form
    params = {"w": jnp.ones(8, jnp.float32)}
    hlo = impl_jax.make_step(rule).lower(params, impl_jax.init(rule, params), params).compile().as_text()
    assert " rsqrt(" not in hlo  # an instruction, not the metadata naming this test
    assert " sqrt(" in hlo


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="measured on XLA:CPU's LLVM contraction")
def test_rnd_keeps_separate_torch_ops_out_of_fma_contraction():
    rng = np.random.default_rng(0)
    b, q = (rng.standard_normal(256).astype(np.float32) for _ in range(2))
    P = _core.Precision(jnp.float32)
    out = np.asarray(jax.jit(lambda b, q: P.rnd(b * np.float32(0.9)) + q)(b, q))
    np.testing.assert_array_equal(out, b * np.float32(0.9) + q)  # NumPy rounds the product first
