"""``differentiable=True``: a step that autograd differentiates, checked by gradcheck.

As torch.optim's differentiable tests do: in float64, the new parameter and every new
state tensor of one step, as functions of the old parameter, its gradient and the old
state, have the Jacobians that finite differences give (``torch.autograd.gradcheck``);
for every rule and its main options, in both eps conventions. Under the torch convention
the step also equals torch.optim's ``differentiable=True`` step bit for bit.
"""

from __future__ import annotations

import pytest
import torch

import impl_torch

from tests.peer_lookup import ours_torch_class, torch_class

OPTIONS = [
    ("adagrad", {"lr": 0.9}),
    ("adagrad", {"lr": 0.9, "weight_decay": 0.1, "maximize": True, "lr_decay": 0.5}),
    ("adagrad", {"lr": 0.9, "eps_in_sqrt": True, "mask_zero_accumulator": True}),
    ("adadelta", {"lr": 0.9, "rho": 0.95}),
    ("adadelta", {"lr": 0.9, "weight_decay": 0.1, "maximize": True}),
    ("adadelta", {"lr": 0.9, "eps_in_sqrt": False}),
    ("rmsprop", {"lr": 0.9}),
    ("rmsprop", {"lr": 0.9, "weight_decay": 0.1, "maximize": True, "centered": True, "momentum": 0.5}),
    ("rmsprop", {"lr": 0.9, "momentum": 0.5, "eps_in_sqrt": True}),
]
IDS = [f"{n}-" + ("-".join(f"{k}={v}" for k, v in kw.items())) for n, kw in OPTIONS]
TORCH_KEYS = {"eps_in_sqrt", "mask_zero_accumulator"}


def _inputs(name, kwargs):
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    names = impl_torch.init_state(ours_torch_class(name)([torch.zeros(1)], **kwargs).group_rules()[0], torch.zeros(1)).keys()
    # second moments well above the squared first moment: the centered root stays real
    state = {
        n: (torch.rand(4, generator=gen, dtype=torch.float64) * (0.1 if n == "grad_avg" else 1) + (n != "grad_avg"))
        .requires_grad_()
        for n in names if n != "step"
    }
    return p, g, state


def _one_step(cls, kwargs, names):
    def f(p, g, *state):
        p = p.clone()  # a non-leaf: the step updates it in place
        p.grad = g
        opt = cls([p], differentiable=True, **kwargs)
        opt.state[p].update({"step": torch.tensor(1.0, dtype=torch.float64)})
        opt.state[p].update({n: s.clone() for n, s in zip(names, state)})
        opt.step()
        return (p, *(opt.state[p][n] for n in names))

    return f


@pytest.mark.parametrize("name, kwargs", OPTIONS, ids=IDS)
def test_gradcheck_through_a_step(name, kwargs):
    p, g, state = _inputs(name, kwargs)
    f = _one_step(ours_torch_class(name), kwargs, list(state))
    assert torch.autograd.gradcheck(f, (p, g, *state.values()))


@pytest.mark.parametrize("name, kwargs", [o for o in OPTIONS if not TORCH_KEYS & o[1].keys()],
                         ids=[i for i, o in zip(IDS, OPTIONS) if not TORCH_KEYS & o[1].keys()])
def test_step_and_gradients_equal_torch_optims_differentiable(name, kwargs):
    p, g, state = _inputs(name, kwargs)
    ours = _one_step(ours_torch_class(name), kwargs, list(state))(p, g, *state.values())
    theirs = _one_step(torch_class(name), kwargs, list(state))(p, g, *state.values())
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)
    weights = [torch.linspace(-1, 1, 4, dtype=torch.float64) * (i + 1) for i in range(len(ours))]
    inputs = (p, g, *state.values())
    gx = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, ours)), inputs)
    gy = torch.autograd.grad(sum((w * y).sum() for w, y in zip(weights, theirs)), inputs)
    for a, b in zip(gx, gy):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_gradient_flows_back_to_the_previous_parameters():
    """Meta-learning's use: a loss after the step, differentiated w.r.t. the weights the
    step started from. One RMSprop step from zero state moves every element by
    ``lr * g / (|g| * sqrt(1 - alpha) + eps)``, whose derivative w.r.t. ``g`` vanishes up to
    eps, so ``d loss / d w = 2 p'`` for ``loss = |p'|^2`` and ``g = 2 w``."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    p = w.clone()
    opt = impl_torch.RMSprop([p], lr=0.1, differentiable=True)
    p.grad = 2 * w
    opt.step()
    (dw,) = torch.autograd.grad((p**2).sum(), w)
    torch.testing.assert_close(dw, 2 * p.detach(), rtol=1e-6, atol=0)
    assert not torch.equal(p.detach(), w.detach())


@pytest.mark.parametrize("kw", [{"foreach": True}, {"fused": True}, {"impl": "foreach"}],
                         ids=["foreach", "fused", "impl-foreach"])
def test_differentiable_with_a_multi_tensor_impl_is_refused(kw):
    with pytest.raises(ValueError, match="differentiable=True runs the per-tensor math"):
        impl_torch.Adagrad([torch.zeros(2, requires_grad=True)], differentiable=True, **kw)


def test_functional_step_is_differentiable():
    from adaptbench import rules

    rule = rules.Adadelta(lr=0.5)
    p0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.3, -0.1], dtype=torch.float64, requires_grad=True)
    p = p0.clone()
    state = impl_torch.init_state(rule, p.detach())
    impl_torch.step(rule, [p], [g], [state], differentiable=True)
    assert p.grad_fn is not None and state["acc_delta"].grad_fn is not None
    with pytest.raises(ValueError, match="impl='foreach'"):
        impl_torch.step(rule, [p], [g], [state], impl="foreach", differentiable=True)
