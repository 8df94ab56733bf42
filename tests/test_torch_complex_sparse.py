"""Complex parameters in impl_torch, against torch.optim and the oracle.

- ``complex_as_real=True`` (default): a complex parameter is stepped as its real view,
  as torch.optim does: bitwise equal to torch.optim for the eager impls (a complex and a
  real parameter in one optimizer), within ``rules.tolerance`` for fused, and equal to
  stepping the real view itself (torch's ``test_complex_2d`` contract).
- ``complex_as_real=False`` (optax): real second moments of ``|g|^2``, checked against the
  float64/complex128 oracle (``rules.reference``).

Adagrad's sparse gradients are Adagrad's own: tests/test_rule_adagrad.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from adaptbench.rules import reference
from impl_torch.updates import COMPLEX_ARITHMETIC

from tests.peer_lookup import ours_torch_class, rule_names, torch_class

# torch's optim_db configurations with the most options (the fused selection of tests/peers)
KWARGS = {
    "adagrad": {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
    "adadelta": {"weight_decay": 0.1, "maximize": True},
    "rmsprop": {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    "adam": {"weight_decay": 0.1, "amsgrad": True, "maximize": True},
    "adamw": {"amsgrad": True, "maximize": True},
    "sgd": {"weight_decay": 0.1, "momentum": 0.9, "dampening": 0.1, "maximize": True},
}
EAGER = {"loop": ({"impl": "loop"}, {"foreach": False}), "foreach": ({"impl": "foreach"}, {"foreach": True}),
         "auto": ({}, {})}


def _params(dtype=torch.complex64):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, generator=gen, dtype=dtype), torch.randn(5, generator=gen)]


def _grads(k, params):
    gen = torch.Generator().manual_seed(100 + k)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]


def _run(opt, params, steps=5):
    for k in range(steps):
        for p, g in zip(params, _grads(k, params)):
            p.grad = g
        opt.step()
    return [p.detach() for p in params], [opt.state[p] for p in params]


@pytest.mark.parametrize("impl", sorted(EAGER))
@pytest.mark.parametrize("name", rule_names("torch"))
def test_complex_as_real_is_torch_optim_bitwise(name, impl):
    ours_flags, torch_flags = EAGER[impl]
    a = [p.requires_grad_() for p in _params()]
    b = [p.requires_grad_() for p in _params()]
    pa, sa = _run(torch_class(name)(a, **KWARGS[name], **torch_flags), a)
    pb, sb = _run(ours_torch_class(name)(b, **KWARGS[name], **ours_flags), b)
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
    for x, y in zip(sa, sb):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("name", rule_names("torch"))
def test_complex_fused_within_tolerance(name):
    a = [p.requires_grad_() for p in _params()]
    b = [p.requires_grad_() for p in _params()]
    pa, _ = _run(torch_class(name)(a, **KWARGS[name], foreach=False), a)
    pb, _ = _run(ours_torch_class(name)(b, **KWARGS[name], impl="fused"), b)
    tol = rules.tolerance(torch.float32)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(y, x, rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["no-wd", "wd"])
@pytest.mark.parametrize("name", rule_names("torch"))
def test_complex_param_steps_like_its_real_view(name, weight_decay):
    """Bitwise without weight decay; with it, torch.optim's single-tensor order adds
    ``wd * p`` in complex arithmetic, which may round differently (1 ulp) from the real sum.
    A rule that torch.optim steps wholly in complex arithmetic (SGD,
    ``updates.COMPLEX_ARITHMETIC``) is within tolerance only: each ``add(u, alpha=a)``
    rounds ``a*u`` before the sum, where the real kernel fuses them."""
    kwargs = {**KWARGS[name], "weight_decay": weight_decay}
    c = _params()[0].requires_grad_()
    r = torch.view_as_real(_params()[0]).clone().requires_grad_()
    oc, orl = ours_torch_class(name)([c], **kwargs), ours_torch_class(name)([r], **kwargs)
    for k in range(4):
        c.grad = _grads(k, [c])[0]
        r.grad = torch.view_as_real(c.grad).clone()
        oc.step()
        orl.step()
    if weight_decay == 0 and name not in COMPLEX_ARITHMETIC:
        assert torch.equal(torch.view_as_real(c.detach()), r.detach())
    tol = rules.tolerance(torch.float32)
    torch.testing.assert_close(torch.view_as_real(c.detach()), r.detach(), rtol=tol.rtol, atol=tol.atol)


OPTAX_WAY = [
    ("adagrad", {"initial_accumulator_value": 0.1, "weight_decay": 0.1}),
    ("adagrad", {"eps_in_sqrt": True, "mask_zero_accumulator": True, "eps": 1e-7}),
    ("adadelta", {"weight_decay": 0.1, "maximize": True}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("rmsprop", {"alpha": 0.9, "eps_in_sqrt": True}),
]


@pytest.mark.parametrize("impl", ["loop", "foreach", "auto"])
@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=["complex128", "complex64"])
@pytest.mark.parametrize("name, kwargs", OPTAX_WAY, ids=[f"{n}-{'-'.join(kw)}" for n, kw in OPTAX_WAY])
def test_complex_as_real_false_is_the_oracle(name, kwargs, dtype, impl):
    rule = rules.rule_class(name)(complex_as_real=False, **kwargs)
    params = [p.requires_grad_() for p in _params(dtype)]
    want_p, want_s = params[0].detach().numpy().astype(np.complex128), None
    want_s = reference.init_state(rule, want_p)
    opt = impl_torch.optimizer_for(rule, params, impl=impl)
    for k in range(5):
        grads = _grads(k, params)
        want_p, want_s = reference.step(rule, want_p, grads[0].numpy(), want_s)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    tol = rules.tolerance(torch.float64 if dtype == torch.complex128 else torch.float32)
    np.testing.assert_allclose(params[0].detach().numpy(), want_p, rtol=tol.rtol, atol=tol.atol)
    state = opt.state[params[0]]
    for name_ in rule.state_names:
        assert np.dtype(reference.state_dtype(rule, name_, np.complex128)).kind == (
            "c" if state[name_].is_complex() else "f"
        ), name_
        np.testing.assert_allclose(state[name_].numpy(), want_s[name_], rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("name", rule_names())
def test_complex_with_decoupled_weight_decay_steps_like_its_real_view(name):
    """Decoupled decay acts on p itself, so it stays in the rule's math on the real view
    (the loop's complex prologue only negates the gradient here)."""
    kwargs = {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}
    c = _params()[0].requires_grad_()
    r = torch.view_as_real(_params()[0]).clone().requires_grad_()
    oc, orl = ours_torch_class(name)([c], **kwargs, impl="loop"), ours_torch_class(name)([r], **kwargs, impl="foreach")
    for k in range(3):
        c.grad = _grads(k, [c])[0]
        r.grad = torch.view_as_real(c.grad).clone()
        oc.step()
        orl.step()
    assert torch.equal(torch.view_as_real(c.detach()), r.detach())
