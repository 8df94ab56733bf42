"""Adagrad's own behaviour: ``lr_decay`` with step counts that differ between tensors, and
sparse gradients (``nn.Embedding(sparse=True)``), bitwise equal to torch.optim's sparse
Adagrad for every impl, duplicate indices included; weight decay raises as in torch.optim.
Its presets' values, steps worked by hand, the zero-accumulator mask against optax, and
torch.optim.Adagrad's per-group initial accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from adaptbench.rules import reference

# --- lr_decay ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_adagrad_lr_decay_with_differing_step_counts(impl):
    # foreach passes one clr per tensor (torch._foreach_mul's ScalarList).
    rule = rules.Adagrad(lr_decay=0.5)
    params = [torch.ones(2), torch.ones(2)]
    states = [impl_torch.init_state(rule, p) for p in params]
    states[1]["step"].fill_(9.0)
    impl_torch.step(rule, params, [torch.ones(2), torch.ones(2)], states, impl=impl)
    # sum = 1, step 1 -> clr = 0.01; step 10 -> clr = 0.01 / (1 + 9 * 0.5)
    torch.testing.assert_close(params[0], torch.full((2,), 1 - 0.01 / (1 + 1e-10)))
    torch.testing.assert_close(params[1], torch.full((2,), 1 - 0.01 / 5.5 / (1 + 1e-10)))
    assert [s["step"].item() for s in states] == [1.0, 10.0]


# --- sparse gradients ---------------------------------------------------------------------------

SPARSE = [
    {},
    {"lr": 0.1, "lr_decay": 0.5, "initial_accumulator_value": 0.1},
    {"maximize": True, "eps": 1e-6},
]


def _embedding_run(optimizer_cls, kwargs, steps=5):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(12, 3, sparse=True)
    dense = torch.nn.Linear(3, 2)
    opt = optimizer_cls([*emb.parameters(), *dense.parameters()], **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        index = torch.randint(0, 12, (8,), generator=gen)  # duplicates: rows used twice
        dense(emb(index)).square().sum().backward()
        opt.step()
    return [p.detach() for p in (*emb.parameters(), *dense.parameters())], opt.state[emb.weight]["sum"]


def _embedding_only_run(optimizer_cls, kwargs, steps=5):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(12, 3, sparse=True)
    opt = optimizer_cls(emb.parameters(), **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        emb(torch.randint(0, 12, (8,), generator=gen)).sin().sum().backward()
        opt.step()
    return emb.weight.detach(), opt.state[emb.weight]["sum"]


# torch.optim.Adagrad's sparse path builds its sparse tensors without opting in or out of
# the invariant checks, and torch warns about that; the warning is torch.optim's.
torch_sparse_warning = pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")


@torch_sparse_warning
@pytest.mark.parametrize("impl", ["loop", "foreach", "auto"])
@pytest.mark.parametrize("kwargs", SPARSE, ids=["default", "lr_decay-initial", "maximize-eps"])
def test_sparse_adagrad_with_dense_params_is_torch_optims(kwargs, impl):
    theirs = _embedding_run(torch.optim.Adagrad, {**kwargs, "foreach": False})
    ours = _embedding_run(impl_torch.Adagrad, {**kwargs, "impl": impl})
    for x, y in zip(theirs[0], ours[0]):
        assert torch.equal(x, y)
    assert torch.equal(theirs[1], ours[1])


@torch_sparse_warning
@pytest.mark.parametrize("impl", ["loop", "foreach", "auto", "fused"])
@pytest.mark.parametrize("kwargs", SPARSE, ids=["default", "lr_decay-initial", "maximize-eps"])
def test_sparse_adagrad_is_torch_optims_in_every_impl(kwargs, impl):
    """Sparse gradients take the sparse path whatever the impl (torch.optim's fused
    Adagrad refuses them; ours steps them as its loop does)."""
    theirs = _embedding_only_run(torch.optim.Adagrad, {**kwargs, "foreach": False})
    ours = _embedding_only_run(impl_torch.Adagrad, {**kwargs, "impl": impl})
    assert torch.equal(theirs[0], ours[0]) and torch.equal(theirs[1], ours[1])


def test_sparse_duplicates_are_coalesced_first():
    """Two half-gradients for one row are one step with their sum, not two steps."""
    p = torch.zeros(4, 2, requires_grad=True)
    opt = impl_torch.Adagrad([p], lr=1.0)
    index = torch.tensor([[1, 1], [0, 0]])
    p.grad = torch.sparse_coo_tensor(index, torch.tensor([0.5, 0.5]), (4, 2))
    opt.step()
    q = torch.zeros(4, 2, requires_grad=True)
    ref = impl_torch.Adagrad([q], lr=1.0)
    q.grad = torch.zeros(4, 2)
    q.grad[1, 0] = 1.0
    ref.step()
    assert torch.equal(p.detach(), q.detach())


@torch_sparse_warning
def test_sparse_with_weight_decay_raises_like_torch_and_changes_nothing():
    emb = torch.nn.Embedding(5, 3, sparse=True)
    before = emb.weight.detach().clone()
    for cls in (torch.optim.Adagrad, impl_torch.Adagrad):
        opt = cls(emb.parameters(), weight_decay=0.1)
        emb.zero_grad()
        emb(torch.tensor([1, 2])).sum().backward()
        with pytest.raises(RuntimeError, match="weight_decay option is not compatible with sparse"):
            opt.step()
    assert torch.equal(emb.weight, before)


def test_functional_step_takes_a_sparse_grad():
    rule = rules.Adagrad(lr=0.5)
    p = torch.ones(3, 2)
    state = impl_torch.init_state(rule, p)
    g = torch.sparse_coo_tensor(torch.tensor([[2]]), torch.tensor([[1.0, -1.0]]), (3, 2))
    impl_torch.step(rule, [p], [g], [state])
    assert torch.equal(p[:2], torch.ones(2, 2)) and not torch.equal(p[2], torch.ones(2))
    assert state["step"].item() == 1.0


# --- presets and the oracle ------------------------------------------------------------------


def test_presets():
    assert rules.preset("adagrad", "seed") == rules.Adagrad(lr=0.02, eps=1e-6, eps_in_sqrt=True)
    optax_adagrad = rules.preset("adagrad", "optax")
    assert (optax_adagrad.eps, optax_adagrad.initial_accumulator_value) == (1e-7, 0.1)
    assert optax_adagrad.eps_in_sqrt and optax_adagrad.mask_zero_accumulator


def test_state_and_traffic():
    assert rules.Adagrad().state_names == ("sum",)
    assert rules.Adagrad().accesses_per_element * 4 == 20


# The oracle against steps worked by hand (scalar parameter p = 1, gradient g = 0.5).


def test_oracle_by_hand_with_lr_decay():
    rule = rules.Adagrad(lr=0.1, eps=1e-10, lr_decay=0.5)
    p, s = reference.run(rule, 1.0, [0.5, 0.5])
    # step 1: s = 0.25, p = 1 - 0.1 * 0.5 / (0.5 + 1e-10); step 2: clr = 0.1 / 1.5, s = 0.5
    p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-10)
    p2 = p1 - (0.1 / 1.5) * 0.5 / (math.sqrt(0.5) + 1e-10)
    assert p == pytest.approx(p2, rel=1e-15) and s["sum"] == 0.5 and s["step"] == 2


def test_oracle_masks_zero_accumulator():
    masked = rules.Adagrad(eps=0.0, eps_in_sqrt=True, mask_zero_accumulator=True)
    p, _ = reference.run(masked, np.array([1.0, 1.0]), [np.array([0.0, 0.5])])
    assert p[0] == 1.0 and p[1] < 1.0
    p, _ = reference.run(masked.replace(mask_zero_accumulator=False), np.array([1.0]), [np.array([0.0])])
    assert np.isnan(p[0])  # torch.optim's 0/0


def test_each_group_has_its_own_initial_accumulator_value():
    # Deliberate difference: torch.optim.Adagrad fills "sum" with the constructor's value
    # for every group (and self.defaults' value for lazily created state).
    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    opt = impl_torch.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 0.5}])
    opt.add_param_group({"params": [c], "initial_accumulator_value": 0.25})
    assert [opt.state[p]["sum"][0].item() for p in (a, b, c)] == [0.0, 0.5, 0.25]
    theirs = torch.optim.Adagrad([{"params": [a.detach().clone().requires_grad_()]},
                                  {"params": [b.detach().clone().requires_grad_()], "initial_accumulator_value": 0.5}])
    assert [s["sum"][0].item() for s in theirs.state.values()] == [0.0, 0.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_mask_matches_optax_where_accumulator_is_zero(dtype):
    """optax's scale_by_rss gives 0 where the sum is 0; torch's formula gives 0/0 = NaN there."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    import impl_jax

    with jax.enable_x64(dtype == "float64"):
        params = {"w": jnp.asarray([1.0, 2.0, 3.0], dtype)}
        grads = {"w": jnp.asarray([0.0, 0.5, -0.5], dtype)}
        masked = impl_jax.adagrad(lr=0.1, initial_accumulator_value=0.0, eps=0.0, eps_in_sqrt=True,
                                  mask_zero_accumulator=True)
        u, _ = masked.update(grads, masked.init(params), params)
        theirs = optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
        u_optax, _ = theirs.update(grads, theirs.init(params), params)
        assert float(u["w"][0]) == 0.0 and float(u_optax["w"][0]) == 0.0
        tol = rules.tolerance(dtype)
        np.testing.assert_allclose(np.asarray(u["w"]), np.asarray(u_optax["w"]), rtol=tol.rtol, atol=tol.atol)
        torch_like = impl_jax.adagrad(lr=0.1, eps=0.0)
        u, _ = torch_like.update(grads, torch_like.init(params), params)
        assert np.isnan(float(u["w"][0])) and np.isfinite(np.asarray(u["w"][1:])).all()
