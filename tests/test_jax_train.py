"""impl_jax.make_train_step / make_train_loop: whole training steps, and many in one scan.

The scan must follow the same trajectory as the step-by-step path it replaces (a jitted
gradient, then ``impl_jax.make_step``), report the loss before each update, accept any
optax transformation, and refuse bad input with errors that name the argument.
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import datasets  # noqa: E402
import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from bench.training import models, models_jax  # noqa: E402
from bench.training.train_runs import batch_order  # noqa: E402

RULES = list(rules.RULES)
EPOCHS = 4
BATCH = 24


def _loss(params, batch):
    return models_jax.loss("linear", params, *batch)


@functools.lru_cache(maxsize=None)
def _iris(dtype: str):
    split = datasets.load("iris", seed=0, dtype=np.dtype(dtype))
    init = models.init_params("linear", split.n_features, split.n_classes, seed=0, dtype=np.dtype(dtype))
    order = batch_order(len(split.train[1]), BATCH, EPOCHS, seed=0)
    return split, init, np.stack([b for epoch in order for b in epoch]).astype(np.int32)


def _setup(dtype: str):
    split, init, batches = _iris(dtype)
    data = (jnp.asarray(split.train[0]), jnp.asarray(split.train[1]))
    return models_jax.to_params("linear", init), data, batches


def _stepwise(rule, params, data, batches):
    """The path make_train_loop replaces: a jitted gradient, then make_step, per batch."""
    grad = jax.jit(jax.value_and_grad(_loss))
    step = impl_jax.make_step(rule)
    state, losses = impl_jax.init(rule, params), []
    for rows in batches:
        loss, grads = grad(params, jax.tree.map(lambda x: x[rows], data))
        params, state = step(params, state, grads)
        losses.append(loss)
    return params, state, np.asarray(losses)


def _close(actual, expected, dtype: str):
    tol = rules.tolerance(dtype)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule_name", RULES)
def test_scan_follows_the_stepwise_trajectory(rule_name, dtype):
    with jax.enable_x64(dtype == "float64"):
        rule = rules.preset(rule_name, "seed")
        params, data, batches = _setup(dtype)
        expected = _stepwise(rule, params, data, batches)
        run = impl_jax.make_train_loop(_loss, rule)
        start = models_jax.to_params("linear", _iris(dtype)[1])
        got = run(start, impl_jax.init_optimizer(rule, start), data, batches)
        assert got[2].shape == (len(batches),) and got[2].dtype == np.dtype(dtype)
        _close(got, expected, dtype)
        assert int(got[1].step) == len(batches)
        # it trained: the last epoch's mean loss is well below the first's
        per_epoch = np.asarray(got[2]).reshape(EPOCHS, -1).mean(axis=1)
        assert per_epoch[-1] < 0.97 * per_epoch[0]


@pytest.mark.parametrize("rule_name", RULES)
def test_train_step_is_gradient_then_make_step(rule_name):
    rule = rules.preset(rule_name, "torch")
    params, data, batches = _setup("float32")
    expected = _stepwise(rule, params, data, batches[:3])
    step = impl_jax.make_train_step(_loss, rule)
    p = models_jax.to_params("linear", _iris("float32")[1])
    s, losses = impl_jax.init_optimizer(rule, p), []
    for rows in batches[:3]:
        p, s, loss = step(p, s, jax.tree.map(lambda x: x[rows], data))
        losses.append(loss)
    _close((p, s, np.asarray(losses)), expected, "float32")


def test_any_optax_transformation():
    tx = optax.chain(optax.clip_by_global_norm(1.0), impl_jax.rmsprop(lr=0.01))
    params, data, batches = _setup("float32")
    state = tx.init(params)
    grad = jax.grad(_loss)
    p, s = params, state
    for rows in batches[:5]:
        updates, s = tx.update(grad(p, jax.tree.map(lambda x: x[rows], data)), s, p)
        p = optax.apply_updates(p, updates)
    start = models_jax.to_params("linear", _iris("float32")[1])
    got_p, got_s, _ = impl_jax.make_train_loop(_loss, tx)(start, impl_jax.init_optimizer(tx, start), data, batches[:5])
    _close((got_p, got_s), (p, s), "float32")


def test_params_and_state_are_donated():
    rule = rules.preset("rmsprop", "torch")
    params, data, batches = _setup("float32")
    state = impl_jax.init_optimizer(rule, params)
    new_params, new_state, _ = impl_jax.make_train_loop(_loss, rule)(params, state, data, batches[:2])
    assert params["W"].is_deleted() and state.square_avg["W"].is_deleted()
    assert not new_params["W"].is_deleted()


def test_out_of_range_rows_on_device_read_nan():
    """A jax.Array of indices is not bounds-checked (a device round trip per call); a bad
    row must then show as a NaN loss, not as a silently clamped row."""
    rule = rules.preset("adagrad", "torch")
    params, data, batches = _setup("float32")
    bad = jnp.asarray(batches[:2]).at[1, 0].set(10_000)
    _, _, losses = impl_jax.make_train_loop(_loss, rule)(params, impl_jax.init_optimizer(rule, params), data, bad)
    assert np.isfinite(losses[0]) and np.isnan(losses[1])


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(loss_fn=3), TypeError, "loss_fn must be callable"),
        (dict(optimizer="rmsprop"), TypeError, "optimizer must be a rules"),
        (dict(batches=np.zeros((2, 24), np.float32)), TypeError, "batches must hold integer"),
        (dict(batches=np.zeros(24, np.int32)), ValueError, r"batches must have shape \(steps"),
        (dict(batches=np.zeros((0, 24), np.int32)), ValueError, r"batches must have shape \(steps"),
        (dict(batches=np.full((2, 24), 120, np.int32)), ValueError, "data has 120 rows"),
        (dict(batches=np.full((2, 24), -1, np.int32)), ValueError, r"in \[-1, -1\]"),
        (dict(data="short_y"), ValueError, "sharing their first axis"),
        (dict(loss_fn=lambda p, b: models_jax.apply("linear", p, b[0]).sum(axis=1)), TypeError,
         "scalar-output functions"),
    ],
    ids=["loss-not-callable", "optimizer-not-a-rule", "float-batches", "1d-batches", "no-steps",
         "row-past-the-end", "negative-row", "data-rows-differ", "loss-not-scalar"],
)
def test_bad_input_is_refused_before_anything_runs(change, error, match):
    rule = rules.preset("adagrad", "torch")
    params, data, batches = _setup("float32")
    args = dict(loss_fn=_loss, optimizer=rule, data=data, batches=batches[:2])
    args.update(change)
    if args["data"] == "short_y":
        args["data"] = (data[0], data[1][:-1])
    with pytest.raises(error, match=match):
        run = impl_jax.make_train_loop(args["loss_fn"], args["optimizer"])
        state = impl_jax.init_optimizer(rule, params)
        run(params, state, args["data"], args["batches"])
    assert not params["W"].is_deleted()
