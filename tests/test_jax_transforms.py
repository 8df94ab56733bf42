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
from tests.registry_cases import (  # noqa: E402
    bad_values,
    base,
    everything,
    halved,
    has_field,
    make_peer,
    peer_cases,
    switches,
)
from tests.peer_lookup import rule_names, state_class  # noqa: E402

#: Every registered rule impl_jax has math for.
RULES = [name for name in rules.RULES if name in _core.SPECS]


def _factory(name):
    """The rule's factory (``impl_jax.<name>``; a user's rule's too)."""
    return getattr(impl_jax, name)


def _all(name, convention="torch"):
    """The rule under ``convention`` with every term on (``registry_cases.everything``)."""
    rule = base(rules.RULES[name], convention)
    return rule.replace(**everything(rule))

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
    f"{name}-{case}": rule
    for name in RULES
    if name in rule_names("optax")
    for cases in [peer_cases(base(rules.RULES[name], "optax"), "optax")]
    for case, rule in cases + [("halved", halved(cases[-1][1]))]
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_factory_matches_optax(case, dtype):
    rule = OPTAX_CASES[case]
    with _dtype_ctx(dtype):
        ours = _factory(rule.name)(**rule.as_dict())  # the keywords the rules objects carry
        theirs = make_peer(rule, "optax")
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


# --------------------------------------------------------------------------------------
# Chaining, rules objects, schedules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_usable_in_optax_chain(name):
    """clip_by_global_norm then the rule == clipping by hand, then the rule (bitwise)."""
    kwargs = _all(name).as_dict()
    chained = optax.chain(optax.clip_by_global_norm(1.0), _factory(name)(**kwargs))
    alone = _factory(name)(**kwargs)
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
    assert isinstance(s_a[1], state_class(name))


@pytest.mark.parametrize("name", RULES)
def test_transformation_of_rule_equals_factory(name):
    rule = halved(_all(name))
    a, b = impl_jax.transformation(rule), _factory(name)(**rule.as_dict())
    params = _params(jnp.float32)
    s_a, s_b = a.init(params), b.init(params)
    for k in range(3):
        grads = _grads(params, k)
        u_a, s_a = a.update(grads, s_a, params)
        u_b, s_b = b.update(grads, s_b, params)
        _assert_tree_close(u_a, u_b, "float32", bitwise=True)
    _assert_tree_close(s_a, s_b, "float32", bitwise=True)


SCHEDULE_CASES = {
    f"{name}-{case}": rule
    for name in RULES
    for case, rule in [("defaults", base(rules.RULES[name])), ("all", _all(name))]
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


@pytest.mark.parametrize("name", [n for n in RULES if n in rule_names("optax")])
def test_factory_accepts_schedule_like_optax(name):
    # optax's defaults: with a momentum optax traces the lr-scaled update, which differs
    # from torch's (and ours) once the lr changes
    rule = base(rules.RULES[name], "optax")
    schedule = optax.linear_schedule(0.1, 0.01, transition_steps=4)
    ours = _factory(rule.name)(**{**rule.as_dict(), "lr": schedule})
    theirs = make_peer(rule, "optax", fields={"lr": schedule})
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

# torch.optim's and optax's conventions (where the rule has them), and every term on.
STEP_CASES = {
    f"{name}-{case}": rule
    for name in RULES
    for case, rule in [*((c, rules.preset(name, c)) for c in ("torch", "optax") if c in rules.RULES[name].PRESETS),
                       ("all", _all(name))]
}


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("case", list(STEP_CASES))
def test_make_step_equals_transformation_plus_apply_updates(case, dtype):
    """Bitwise for float32/float64 (one jitted update + apply_updates, as training runs it).

    For bfloat16 make_step rounds ``p + delta`` once from float32, as torch's fused
    ``addcdiv_`` does, while the transformation hands out a bf16 delta: one rounding more,
    so there the two differ by at most one bf16 ulp of the delta plus one of the result
    (a tolerance relative to the result would not do: ``p + delta`` may cancel).
    Under decoupled weight decay (AdamW) the transformation's update is make_step's new
    parameter minus ``p`` (``_core._decoupled``), exact only while the two are within a
    factor 2 of each other, so there the same bound holds in every dtype. The states are
    bitwise equal in every dtype.
    """
    rule = STEP_CASES[case]
    jdtype = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}[dtype]
    decoupled = rule.decoupled_weight_decay and rule.weight_decay != 0
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
            if dtype == "bfloat16" or decoupled:
                ulp = _bf16_ulp if dtype == "bfloat16" else lambda x: np.spacing(np.abs(x).astype(jdtype))
                for a, b, u in zip(*map(jax.tree.leaves, (p_a, p_b, updates))):
                    a, b, u = _to64(a), _to64(b), _to64(u)
                    assert np.all(np.abs(a - b) <= ulp(u) + ulp(a))
                p_b = jax.tree.map(jnp.copy, p_a)  # re-synchronise: single-step differences only
            else:
                _assert_tree_close(p_a, p_b, dtype, bitwise=True)
            _assert_tree_close(s_a, s_b, dtype, bitwise=True)
        assert s_a.step.dtype == jnp.int32 and int(s_a.step) == STEPS
        for leaf, ref in zip(jax.tree.leaves(p_a), jax.tree.leaves(params)):
            assert leaf.dtype == ref.dtype and leaf.shape == ref.shape


@pytest.mark.parametrize("name", RULES)
def test_make_step_donates_params_and_state(name):
    rule = _all(name)
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


@pytest.mark.parametrize("name", RULES)
def test_pytree_leaves_are_independent(name):
    """A tree steps exactly as its leaves would one at a time, and keeps its structure."""
    rule = _all(name)
    params = _params(jnp.float32)
    step = impl_jax.make_step(rule)
    out, state = step(jax.tree.map(jnp.copy, params), impl_jax.init(rule, params), _grads(params, 0))
    assert jax.tree.structure(out) == jax.tree.structure(params)
    for moment in rule.state_names:
        assert jax.tree.structure(getattr(state, moment)) == jax.tree.structure(params)
    for leaf_p, leaf_g, leaf_out in zip(jax.tree.leaves(params), jax.tree.leaves(_grads(params, 0)), jax.tree.leaves(out)):
        single, _ = step(jnp.copy(leaf_p), impl_jax.init(rule, leaf_p), leaf_g)
        np.testing.assert_array_equal(np.asarray(single), np.asarray(leaf_out))


# --------------------------------------------------------------------------------------
# State, dtypes, x64
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_state_fields_follow_torch_names(name):
    """``step`` (int32, 0) then every name of ``STATE``, torch.optim's; the moments this
    configuration keeps are trees like the params, each leaf of its param's dtype filled with
    ``initial_value``, the others None."""
    cls = rules.RULES[name]
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros((), jnp.bfloat16)}
    for rule in (base(cls), _all(name)):
        s = impl_jax.init(rule, params)
        assert type(s) is state_class(name) and s._fields == ("step", *cls.STATE)
        assert s.step.dtype == jnp.int32 and s.step.shape == () and int(s.step) == 0
        for moment in cls.STATE:
            tree = getattr(s, moment)
            if moment not in rule.state_names:
                assert tree is None, moment
                continue
            assert tree["a"].dtype == jnp.float32 and tree["b"].dtype == jnp.bfloat16
            assert float(tree["a"][0]) == np.float32(rule.initial_value(moment))


@pytest.mark.parametrize("name", RULES)
def test_mixed_dtype_tree_keeps_each_leaf_dtype(name):
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    rule = _all(name)
    tx = impl_jax.transformation(rule)
    state = tx.init(params)
    updates, state = tx.update(jax.tree.map(lambda p: p * 0.5, params), state, params)
    assert updates["a"].dtype == jnp.float32 and updates["b"].dtype == jnp.bfloat16
    for moment in rule.state_names:
        assert getattr(state, moment)["b"].dtype == jnp.bfloat16


@pytest.mark.parametrize("name", RULES)
def test_float64_under_x64(x64, name):
    params = {"w": jnp.asarray(np.linspace(-1, 1, 7), jnp.float64)}
    assert params["w"].dtype == jnp.float64
    rule = _all(name)
    new, state = impl_jax.make_step(rule)(jax.tree.map(jnp.copy, params), impl_jax.init(rule, params), params)
    assert new["w"].dtype == jnp.float64
    assert all(getattr(state, moment)["w"].dtype == jnp.float64 for moment in rule.state_names)


def test_import_does_not_enable_x64():
    assert not jax.config.jax_enable_x64


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,argument,value",
    [pytest.param(name, field, value, id=f"{name}-{field}={value}")
     for name in RULES for field, value in bad_values(rules.RULES[name])],
)
def test_invalid_hyperparameters_name_the_argument(name, argument, value):
    with pytest.raises(ValueError, match=argument):
        _factory(name)(**{argument: value})


@pytest.mark.parametrize(
    "name,switch",
    [pytest.param(name, field, id=f"{name}-{field}") for name in RULES for field in switches(rules.RULES[name])],
)
def test_non_bool_switch_is_a_type_error(name, switch):
    with pytest.raises(TypeError, match=switch):
        _factory(name)(**{switch: 1})


@pytest.mark.parametrize("name", RULES)
def test_weight_decay_without_params_is_a_clear_error(name):
    tx = _factory(name)(weight_decay=0.1)
    params = _params(jnp.float32)
    with pytest.raises(ValueError, match="weight_decay.*params"):
        tx.update(params, tx.init(params))
    # without weight decay params are optional, as in optax (AdamW's default decay is 0.01)
    tx = _factory(name)(weight_decay=0)
    tx.update(params, tx.init(params))


@pytest.mark.parametrize("name", RULES)
def test_wrong_inputs_are_rejected(name):
    with pytest.raises(TypeError, match="rules"):
        impl_jax.transformation({"lr": 0.1})
    with pytest.raises(TypeError, match="rules"):
        impl_jax.make_step(name)
    with pytest.raises(TypeError, match="floating"):
        impl_jax.init(base(rules.RULES[name]), {"w": jnp.arange(3)})
    with pytest.raises(ValueError, match="lr"):
        impl_jax.transformation(base(rules.RULES[name]), lr=-0.5)


# --------------------------------------------------------------------------------------
# Guards on the XLA behaviour the rounding sequence relies on (see impl_jax/_core.py)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in RULES if has_field(rules.RULES[n], "eps_in_sqrt")])
def test_no_rsqrt_in_compiled_step(name):
    """``a / sqrt(b)`` stays a division by a correctly rounded root (no ``rsqrt`` rewrite)."""
    rule = base(rules.RULES[name]).replace(eps_in_sqrt=True)  # eps inside the root: the rewritable form
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
