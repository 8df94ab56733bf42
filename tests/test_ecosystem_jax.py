"""impl_jax inside the JAX/optax ecosystem (issue #6): chain, inject_hyperparams, schedules,
MultiSteps, jit/vmap, and saving/restoring the state bit for bit.

Already covered elsewhere (not repeated): a plain ``optax.chain`` with clipping and schedules
(tests/test_jax_transforms.py ``test_usable_in_optax_chain``, ``test_schedule_lr``).
"""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from tests.peer_lookup import jax_factory, rule_names  # noqa: E402

NAMES = rule_names()


def _numeric_keywords(name) -> dict:
    """The factory's numeric keywords (bools and tuples such as Adam's ``betas`` aside)
    with their defaults."""
    return {
        k: v.default
        for k, v in inspect.signature(jax_factory(name)).parameters.items()
        if isinstance(v.default, (int, float)) and not isinstance(v.default, bool)
    }


def _static_but_lr(name) -> tuple[str, ...]:
    """inject_hyperparams' ``static_args`` that leave only ``lr`` traced."""
    return tuple(k for k in _numeric_keywords(name) if k != "lr")


def _tree(seed=0):
    k = np.random.default_rng(seed)
    return {"w": jnp.asarray(k.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(k.normal(size=(4,)), jnp.float32)}


def _grads(n, seed=1):
    return [_tree(seed + i) for i in range(n)]


def _step(tx, jit=True):
    """``(params, state, grads) -> (params, state)``: update and ``optax.apply_updates``,
    in one ``jit`` as training runs them. Comparisons take both sides from here: XLA:CPU
    contracts a product update (SGD's ``-lr * g``) into ``p + u`` within one jit (an FMA,
    torch's ``add_(alpha=-lr)``), so an update applied outside it rounds once more."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step) if jit else step


def _run(tx, params, grads, jit=True):
    state = tx.init(params)
    step = _step(tx, jit)
    for g in grads:
        params, state = step(params, state, g)
    return params, state


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", NAMES)
def test_chain_with_identity_transforms_is_bitwise_alone(name):
    """A no-op neighbour in ``optax.chain`` (and nested chains) changes nothing."""
    params, grads = _tree(), _grads(3)
    alone = _run(jax_factory(name)(lr=0.05), params, grads)[0]
    chained = _run(optax.chain(optax.identity(), optax.chain(jax_factory(name)(lr=0.05)), optax.identity()), params, grads)[0]
    _assert_trees_equal(alone, chained)


@pytest.mark.parametrize("name", NAMES)
def test_chain_clip_then_rule_sees_clipped_grads(name):
    params, grads = _tree(), _grads(3)
    clipped = [jax.tree.map(lambda g: jnp.clip(g, -0.5, 0.5), g) for g in grads]
    want = _run(jax_factory(name)(lr=0.05), params, clipped)[0]
    got = _run(optax.chain(optax.clip(0.5), jax_factory(name)(lr=0.05)), params, grads)[0]
    _assert_trees_equal(want, got)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_without_jit(name):
    """All defaults become 0-d arrays under inject_hyperparams: unwrapped and validated.

    Finding: inject_hyperparams rounds every float hyperparameter to the params' dtype
    (float32 here), so ``1 - alpha`` is computed from float32(0.99), not 0.99, and the result
    is not bitwise the factory's with Python floats (RMSprop: ~5e-7 off after 3 steps). It
    is bitwise the factory's given the float32-rounded values.
    """
    params, grads = _tree(), _grads(3)
    defaults = {k: float(np.float32(v)) for k, v in _numeric_keywords(name).items()}
    want = _run(jax_factory(name)(**{**defaults, "lr": float(np.float32(0.05))}), params, grads, jit=False)[0]
    got = _run(optax.inject_hyperparams(jax_factory(name))(lr=0.05), params, grads, jit=False)[0]
    _assert_trees_equal(want, got)


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_lr_changed_inside_jit(name):
    """lr may be traced (state.hyperparams['lr']); changing it equals a rebuilt factory."""
    params, grads = _tree(), _grads(4)
    tx = optax.inject_hyperparams(jax_factory(name), static_args=_static_but_lr(name))(lr=0.05)
    state = tx.init(params)
    step = _step(tx)

    # reference: two constant-lr transformations sharing the inner state
    ref_p, ref = params, jax_factory(name)(lr=0.05)
    ref_s = ref.init(params)
    p = params
    for i, g in enumerate(grads):
        if i == 2:
            state.hyperparams["lr"] = jnp.asarray(0.01, jnp.float32)
            ref = jax_factory(name)(lr=float(np.float32(0.01)))
        p, state = step(p, state, g)
        ref_p, ref_s = _step(ref)(ref_p, ref_s, g)
    _assert_trees_equal(p, ref_p)
    assert float(state.hyperparams["lr"]) == pytest.approx(0.01)


# (rule, base keywords, hyperparameter changed inside jit, its new value)
INJECTED = [
    ("adagrad", {}, "lr_decay", 0.1),
    ("adagrad", {}, "weight_decay", 0.01),
    ("adagrad", {}, "eps", 1e-3),
    ("adadelta", {}, "rho", 0.5),
    ("adadelta", {}, "eps", 1e-3),
    ("adadelta", {}, "weight_decay", 0.01),
    ("rmsprop", {"centered": True, "momentum": 0.5}, "alpha", 0.9),
    ("rmsprop", {"centered": True, "momentum": 0.5}, "alpha", 0.3),  # lerp from the other end
    ("rmsprop", {"momentum": 0.5}, "momentum", 0.9),
    ("rmsprop", {}, "eps", 1e-3),
    ("rmsprop", {"bias_correction": True, "nesterov": True, "momentum": 0.5}, "weight_decay", 0.01),
    # decoupled decay reads the injected lr (Adagrad's clr) and weight_decay
    ("adagrad", {"decoupled_weight_decay": True, "weight_decay": 0.1, "lr_decay": 0.5}, "lr", 0.2),
    ("adadelta", {"decoupled_weight_decay": True, "weight_decay": 0.1}, "weight_decay", 0.5),
    ("rmsprop", {"decoupled_weight_decay": True, "weight_decay": 0.1, "momentum": 0.5}, "lr", 0.2),
]


@pytest.mark.parametrize(
    "name,base,field,value", INJECTED, ids=[f"{n}-{f}={v}" + ("-" + "-".join(b) if b else "") for n, b, f, v in INJECTED]
)
def test_inject_hyperparams_every_numeric_hyperparameter_inside_jit(name, base, field, value):
    """No static_args: every numeric hyperparameter is traced under jit; changing one in
    ``state.hyperparams`` between steps equals rebuilding the factory with the new value
    (inject_hyperparams rounds the values to the params' dtype, float32 here)."""
    params, grads = _tree(), _grads(4)
    tx = optax.inject_hyperparams(jax_factory(name))(lr=0.05, **base)
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p)))
    f32 = lambda v: float(np.float32(v))
    defaults = {k: f32(v) for k, v in _numeric_keywords(name).items()}
    kwargs = {**defaults, **{k: f32(v) if not isinstance(v, bool) else v for k, v in base.items()}, "lr": f32(0.05)}
    ref = jax_factory(name)(**kwargs)
    ref_p, ref_s, p = params, ref.init(params), params
    for i, g in enumerate(grads):
        if i == 2:
            state.hyperparams[field] = jnp.asarray(value, jnp.float32)
            ref = jax_factory(name)(**{**kwargs, field: f32(value)})
        p, state = step(p, state, g)
        u, ref_s = jax.jit(ref.update)(g, ref_s, ref_p)
        ref_p = optax.apply_updates(ref_p, u)
    for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(ref_p), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-6, atol=1e-7)
    assert not np.allclose(np.asarray(p["w"]), np.asarray(_run(tx, params, grads)[0]["w"]), rtol=1e-7, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_traced_switch_is_a_clear_type_error(name):
    """Bools change what is computed: traced, they are refused by name."""
    params = _tree()
    with pytest.raises(TypeError, match=r"maximize is a traced value.*static_args"):
        jax.jit(lambda m: jax_factory(name)(maximize=m).init(params))(True)


def test_momentum_traced_when_the_state_is_created_allocates_the_buffer():
    """jax.jit(tx.init) under inject_hyperparams traces momentum: its value is unknown, so
    the buffer is allocated; a concrete momentum decides as usual, and updates follow the
    state's layout."""
    params, grads = _tree(), _grads(3)
    tx = optax.inject_hyperparams(impl_jax.rmsprop)(lr=0.05, momentum=0.0)
    assert tx.init(params).inner_state.momentum_buffer is None
    state = jax.jit(tx.init)(params)
    assert state.inner_state.momentum_buffer is not None
    p = params
    for g in grads:
        u, state = jax.jit(tx.update)(g, state, p)
        p = optax.apply_updates(p, u)
    want = _run(impl_jax.rmsprop(lr=0.05), params, grads)[0]
    tol = rules.tolerance("float32")  # the hyperparameters were rounded to float32, and -lr*(g/avg) vs (-lr*g)/avg
    for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("name", NAMES)
def test_update_accepts_extra_arguments(name):
    """Every factory returns a GradientTransformationExtraArgs, as optax's aliases do, so
    ``update(..., value=loss)`` (line searches, optax.contrib wrappers) is accepted."""
    tx = jax_factory(name)(lr=0.05)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = _tree()
    with_value, _ = tx.update(params, tx.init(params), params, value=jnp.asarray(1.0))
    without, _ = tx.update(params, tx.init(params), params)
    _assert_trees_equal(with_value, without)


def test_inject_hyperparams_still_validates_concrete_values():
    with pytest.raises(ValueError, match="lr"):
        optax.inject_hyperparams(impl_jax.rmsprop)(lr=-1.0).init(_tree())
    with pytest.raises(ValueError, match="alpha"):
        impl_jax.rmsprop(alpha=jnp.asarray(1.5))
    with pytest.raises(TypeError, match="scalar"):
        impl_jax.rmsprop(lr=jnp.ones(2))


@pytest.mark.parametrize("name", NAMES)
def test_schedule_equals_rebuilding_per_step(name):
    """An optax schedule is evaluated at the pre-increment count."""
    params, grads = _tree(), _grads(4)
    sched = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)
    got = _run(jax_factory(name)(lr=sched), params, grads, jit=False)[0]
    p, state = params, jax_factory(name)().init(params)
    for i, g in enumerate(grads):
        u, state = jax_factory(name)(lr=float(sched(i))).update(g, state, p)
        p = optax.apply_updates(p, u)
    _assert_trees_equal(got, p)


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_accumulates_then_steps_once(name):
    """optax.MultiSteps(k=2): one step per two micro-batches with their mean gradient."""
    params, grads = _tree(), _grads(4)
    got = _run(optax.MultiSteps(jax_factory(name)(lr=0.05), every_k_schedule=2), params, grads)[0]
    means = [jax.tree.map(lambda a, b: (a + b) / 2, grads[0], grads[1]), jax.tree.map(lambda a, b: (a + b) / 2, grads[2], grads[3])]
    want = _run(jax_factory(name)(lr=0.05), params, means)[0]
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_a_batch_of_parameter_sets(name):
    """jax.vmap over init and update (make_step too) equals a Python loop over the batch."""
    rule = rules.preset(name, "torch", lr=0.05)
    batch = 3
    params = [_tree(10 + b) for b in range(batch)]
    grads = [_grads(2, seed=20 + 5 * b) for b in range(batch)]
    stacked_p = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    stacked_g = [jax.tree.map(lambda *xs: jnp.stack(xs), *(grads[b][k] for b in range(batch))) for k in range(2)]

    tx = impl_jax.transformation(rule)
    state = jax.vmap(tx.init)(stacked_p)
    p = stacked_p
    for g in stacked_g:
        p, state = jax.jit(jax.vmap(_step(tx, jit=False)))(p, state, g)
    step = impl_jax.make_step(rule)
    batched = jax.jit(jax.vmap(step))
    p2, s2 = stacked_p, jax.vmap(lambda x: impl_jax.init(rule, x))(stacked_p)
    for g in stacked_g:
        p2, s2 = batched(p2, s2, g)
    for b in range(batch):
        _assert_trees_equal(jax.tree.map(lambda x: x[b], p), _run(tx, params[b], grads[b])[0])
        # make_step against itself: it rounds AdamW's decoupled decay as torch does, not
        # as the transformation's update (tests/test_jax_transforms.py)
        want, s = jax.tree.map(jnp.copy, params[b]), impl_jax.init(rule, params[b])
        for g in grads[b]:
            want, s = step(want, s, g)
        _assert_trees_equal(jax.tree.map(lambda x: x[b], p2), want)
    assert state.step.shape == (batch,) and (np.asarray(state.step) == 2).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_save_restore_round_trip_is_bitwise(name, tmp_path):
    """np.savez of the state's leaves, unflatten with the treedef, continue == uninterrupted."""
    rule = rules.preset(name, "torch", lr=0.05, weight_decay=0.01)
    if name == "rmsprop":
        rule = rule.replace(momentum=0.9, centered=True)
    step = impl_jax.make_step(rule)
    params, grads = _tree(), _grads(6)
    p, s = params, impl_jax.init(rule, params)
    for g in grads[:3]:
        p, s = step(p, s, g)
    leaves, treedef = jax.tree.flatten((p, s))
    np.savez(tmp_path / "ckpt.npz", *[np.asarray(x) for x in leaves])
    for g in grads[3:]:
        p, s = step(p, s, g)

    with np.load(tmp_path / "ckpt.npz") as f:
        loaded = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(f.files))]
    p2, s2 = jax.tree.unflatten(treedef, loaded)
    assert type(s2) is type(s) and s2.step.dtype == jnp.int32
    for g in grads[3:]:
        p2, s2 = step(p2, s2, g)
    _assert_trees_equal((p, s), (p2, s2))


@pytest.mark.parametrize("name", NAMES)
def test_apply_if_finite_skips_a_nan_step(name):
    """optax.apply_if_finite: a NaN gradient leaves params and our inner state untouched."""
    params, grads = _tree(), _grads(2)
    tx = optax.apply_if_finite(jax_factory(name)(lr=0.05), max_consecutive_errors=3)
    state = tx.init(params)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p)))
    params, state = step(params, state, grads[0])
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads[1])
    p2, s2 = step(params, state, bad)
    _assert_trees_equal(p2, params)
    _assert_trees_equal(s2.inner_state, state.inner_state)
    assert int(s2.notfinite_count) == 1
