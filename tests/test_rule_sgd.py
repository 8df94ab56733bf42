"""What is specific to SGD: torch.optim.SGD's checks, its buffer made at the first step from
the gradient (no step count, no state without momentum), state dicts both ways, and the
JAX factory against torch.optim.SGD and optax.sgd. The registry-driven suites cover the
rest."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules

FOREACH = [pytest.param(False, id="loop"), pytest.param(True, id="foreach")]


def _params(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in [(4, 3), (3,), (7,)]]


def _grads(params, steps: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(steps)]


def _run(opt, params, grads, skip=lambda step, i: False):
    for k, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, gs)):
            p.grad = None if skip(k, i) else g.clone()
        opt.step()


def _assert_same(ours, theirs, po, pt):
    for a, b in zip(po, pt):
        assert torch.equal(a, b)
    assert len(ours.state) == len(theirs.state)
    for a, b in zip(po, pt):
        assert set(ours.state.get(a, {})) == set(theirs.state.get(b, {}))
        for key, value in theirs.state.get(b, {}).items():
            assert torch.equal(ours.state[a][key], value), key


@pytest.mark.parametrize(
    "kw",
    [dict(nesterov=True), dict(nesterov=True, momentum=0.9, dampening=0.1)],
    ids=["no-momentum", "dampening"],
)
def test_nesterov_needs_momentum_and_zero_dampening_as_torch_says(kw):
    with pytest.raises(ValueError) as theirs:
        torch.optim.SGD(_params(), **kw)
    makes = [lambda: rules.SGD(**kw), lambda: impl_torch.SGD(_params(), **kw)]
    if importlib.util.find_spec("jax") is not None:  # the torch-only venv has no JAX
        makes.append(lambda: _jax()[2].sgd(**kw))
    for make in makes:
        with pytest.raises(ValueError, match=str(theirs.value)) as ours:
            make()
        assert "nesterov" in str(ours.value) and "momentum" in str(ours.value)


@pytest.mark.parametrize("name, value", [("lr", -0.1), ("momentum", -0.5), ("weight_decay", -1.0)])
def test_negative_values_are_refused_naming_them(name, value):
    with pytest.raises(ValueError):
        torch.optim.SGD(_params(), **{name: value})
    with pytest.raises(ValueError, match=name):
        impl_torch.SGD(_params(), **{name: value})


@pytest.mark.parametrize("foreach", FOREACH)
@pytest.mark.parametrize("nesterov", [False, True])
def test_first_step_buffer_is_the_gradient_bitwise_torch(foreach, nesterov):
    kw = dict(lr=0.05, momentum=0.9, dampening=0.0 if nesterov else 0.3, nesterov=nesterov, weight_decay=0.01)
    po, pt = _params(), _params()
    grads = _grads(po, 5)
    before = [p.detach().clone() for p in po]
    ours, theirs = impl_torch.SGD(po, foreach=foreach, **kw), torch.optim.SGD(pt, foreach=foreach, **kw)
    _run(ours, po, grads[:1])
    _run(theirs, pt, grads[:1])
    for p, p0, g in zip(po, before, grads[0]):
        assert torch.equal(ours.state[p]["momentum_buffer"], g.add(p0, alpha=0.01))
    _assert_same(ours, theirs, po, pt)
    _run(ours, po, grads[1:])
    _run(theirs, pt, grads[1:])
    _assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("foreach", FOREACH)
def test_no_state_without_momentum(foreach):
    po, pt = _params(), _params()
    grads = _grads(po, 3)
    ours, theirs = impl_torch.SGD(po, lr=0.1, foreach=foreach), torch.optim.SGD(pt, lr=0.1, foreach=foreach)
    _run(ours, po, grads)
    _run(theirs, pt, grads)
    assert len(ours.state) == len(theirs.state) == 0
    assert ours.state_dict()["state"] == theirs.state_dict()["state"] == {}
    _assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("foreach", FOREACH)
def test_a_parameter_gets_its_buffer_at_its_own_first_step(foreach):
    """A parameter without a gradient for two steps joins a group whose others have
    buffers: its first step copies its gradient while the others are dampened."""
    kw = dict(lr=0.05, momentum=0.9, dampening=0.3)
    po, pt = _params(), _params()
    grads = _grads(po, 5)
    ours, theirs = impl_torch.SGD(po, foreach=foreach, **kw), torch.optim.SGD(pt, foreach=foreach, **kw)

    def skip(step, i):
        return step < 2 and i == 1

    _run(ours, po, grads, skip)
    _run(theirs, pt, grads, skip)
    _assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("foreach", FOREACH)
@pytest.mark.parametrize("direction", ["ours-to-torch", "torch-to-ours"])
def test_state_dict_both_ways_mid_training(foreach, direction):
    kw = dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)
    ours = lambda ps: impl_torch.SGD(ps, foreach=foreach, **kw)  # noqa: E731
    theirs = lambda ps: torch.optim.SGD(ps, foreach=foreach, **kw)  # noqa: E731
    first, second = (ours, theirs) if direction == "ours-to-torch" else (theirs, ours)
    grads = _grads(_params(), 6)
    p_ref = _params()
    ref = theirs(p_ref)
    _run(ref, p_ref, grads)
    p1 = _params()
    opt1 = first(p1)
    _run(opt1, p1, grads[:3])
    saved = copy.deepcopy(opt1.state_dict())
    assert all(set(s) == {"momentum_buffer"} for s in saved["state"].values())
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    opt2 = second(p2)
    opt2.load_state_dict(saved)
    _run(opt2, p2, grads[3:])
    _assert_same(opt2, ref, p2, p_ref)


def test_sparse_gradients_are_refused():
    p = torch.zeros(4, requires_grad=True)
    opt = impl_torch.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.sparse_coo_tensor([[1]], [1.0], (4,))
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    assert len(opt.state) == 0 and torch.equal(p.detach(), torch.zeros(4))


def test_fused_first_step_and_dampening_share_one_kernel():
    from impl_torch import fused

    if fused.unavailable_reason() is not None:
        pytest.skip(fused.unavailable_reason())
    kw = dict(lr=0.05, momentum=0.9, dampening=0.3)
    po, pt = _params(), _params()
    grads = _grads(po, 4)
    ours, theirs = impl_torch.SGD(po, fused=True, **kw), torch.optim.SGD(pt, foreach=False, **kw)
    _run(ours, po, grads[:1])
    compiled = fused.compiled_count()
    _run(ours, po, grads[1:])
    assert fused.compiled_count() == compiled
    _run(theirs, pt, grads)
    tol = rules.tolerance("float32")
    for a, b in zip(po, pt):
        torch.testing.assert_close(a, b, rtol=tol.rtol, atol=tol.atol)


def _torch_trajectory(kw, p0, grads):
    p = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SGD([p], foreach=False, **kw)
    out = []
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def _jax():
    """(jax.numpy, optax, impl_jax), or the test skipped where JAX is not installed."""
    return pytest.importorskip("jax.numpy"), pytest.importorskip("optax"), pytest.importorskip("impl_jax")


def _optax_trajectory(tx, p0, grads):
    jnp, optax, _ = _jax()
    p = jnp.asarray(p0)
    state = tx.init(p)
    out = []
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
        out.append(np.asarray(p))
    return out


KWARGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True),
]


@pytest.mark.parametrize("kw", KWARGS, ids=["plain", "dampening", "nesterov"])
def test_jax_factory_follows_torch_optim(kw):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(16).astype(np.float32)
    grads = [rng.standard_normal(16).astype(np.float32) for _ in range(6)]
    tol = rules.tolerance("float32")
    impl_jax = _jax()[2]
    for a, b in zip(_optax_trajectory(impl_jax.sgd(**kw), p0, grads), _torch_trajectory(kw, p0, grads)):
        np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol)


def test_jax_state_keeps_a_step_and_a_zero_buffer():
    jnp, _, impl_jax = _jax()
    state = impl_jax.sgd(momentum=0.9).init(jnp.ones(3))
    assert isinstance(state, impl_jax.SGDState) and int(state.step) == 0
    assert np.array_equal(state.momentum_buffer, np.zeros(3))
    assert impl_jax.sgd().init(jnp.ones(3)).momentum_buffer is None


@pytest.mark.parametrize("nesterov", [False, True])
def test_jax_optax_preset_is_optax_sgd(nesterov):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(16).astype(np.float32)
    grads = [rng.standard_normal(16).astype(np.float32) for _ in range(6)]
    _, optax, impl_jax = _jax()
    rule = rules.preset("sgd", "optax", momentum=0.9, nesterov=nesterov)
    ours = impl_jax.transformation(rule)
    theirs = optax.sgd(**rule.peer_kwargs("optax"))
    tol = rules.tolerance("float32")
    for a, b in zip(_optax_trajectory(ours, p0, grads), _optax_trajectory(theirs, p0, grads)):
        np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol)
