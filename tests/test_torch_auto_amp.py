"""``impl="auto"`` never changes a step's numbers with size; fused and AMP; fused devices.

- In float16 and bfloat16 the fused impl computes in float32 and rounds once, the eager
  impls round after every op, so a step's result would depend on which impl ``auto``
  picked, i.e. on the tensor's size. ``auto`` therefore stays eager in 16-bit dtypes:
  at and above ``AUTO_FUSED_MIN_NUMEL`` it equals ``"loop"`` bit for bit (the issue's
  repro: float16 RMSprop, zero gradient, NaN at 1000 and at 3 * 2**16 elements).
- ``fused=True`` declares ``_step_supports_amp_scaling`` and honours ``grad_scale`` and
  ``found_inf`` from ``torch.amp.GradScaler`` as torch.optim's fused Adagrad does: the
  same trajectory (within tolerance) including a skipped step after an inf.
- ``fused=True`` on a device the fused impl has no kernels for (``meta``) raises a
  ``RuntimeError`` naming the device, as torch.optim's does, and changes nothing.
"""

from __future__ import annotations

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import functional

from tests.peer_lookup import ours_torch_class, rule_names, torch_class, torch_takes


def _step_twice(name, impl, numel, dtype, zero_grad=False):
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(numel, generator=gen).to(dtype))
    opt = ours_torch_class(name)([p], **({} if impl == "auto" else {"impl": impl}))
    for _ in range(2):
        p.grad = torch.zeros_like(p) if zero_grad else torch.randn(numel, generator=gen).to(dtype)
        opt.step()
    return p.detach(), opt.state[p]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", rule_names())
def test_auto_at_the_fused_threshold_is_loop_in_16_bit(name, dtype):
    numel = functional.AUTO_FUSED_MIN_NUMEL
    auto_p, auto_s = _step_twice(name, "auto", numel, dtype)
    loop_p, loop_s = _step_twice(name, "loop", numel, dtype)
    # bitwise, NaNs included (float16 squares underflow to 0 where |g| < 2.4e-3)
    torch.testing.assert_close(auto_p, loop_p, rtol=0, atol=0, equal_nan=True)
    for k in loop_s:
        torch.testing.assert_close(auto_s[k], loop_s[k], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("numel", [1000, 3 * 2**16], ids=["small", "at-threshold"])
def test_float16_rmsprop_zero_grad_is_nan_at_every_size(numel):
    """eps = 1e-8 rounds to 0 in float16: 0 / (sqrt(0) + 0) is NaN, as torch.optim computes."""
    p = torch.nn.Parameter(torch.full((numel,), 0.5, dtype=torch.float16))
    opt = impl_torch.RMSprop([p])
    p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.isnan(p).all()
    q = torch.nn.Parameter(torch.full((numel,), 0.5, dtype=torch.float16))
    ref = torch.optim.RMSprop([q])
    q.grad = torch.zeros_like(q)
    ref.step()
    assert torch.equal(p.isnan(), q.isnan())


# --- AMP -------------------------------------------------------------------------------------------

KWARGS = {  # the fused selection of tests/peers (compilations shared within a run)
    "adagrad": {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
    "adadelta": {"weight_decay": 0.1, "maximize": True},
    "rmsprop": {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    "adam": {"weight_decay": 0.1, "amsgrad": True, "maximize": True},
    "adamw": {"amsgrad": True, "maximize": True},
    "sgd": {"weight_decay": 0.1, "momentum": 0.9, "dampening": 0.1, "maximize": True},
}


def _amp_run(make, steps=5, inf_at=2):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(10, 5, generator=gen).requires_grad_(), torch.randn(10, generator=gen).requires_grad_()]
    opt = make(params)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    steps_seen, scales = [], []
    for k in range(steps):
        opt.zero_grad()
        x = torch.randn(5, generator=gen)
        loss = (params[0] @ x + params[1]).square().sum()
        if k == inf_at:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        step = opt.state[params[0]].get("step")  # SGD keeps none: its skip shows in the params
        steps_seen.append(None if step is None else step.item())
        scales.append(scaler.get_scale())
    return [p.detach() for p in params], steps_seen, scales


@pytest.mark.parametrize("name", rule_names("torch"))
def test_fused_honours_grad_scaler_like_torch(name):
    ours = _amp_run(lambda ps: ours_torch_class(name)(ps, **KWARGS[name], fused=True))
    # torch.optim's fused kernel where it has one, else its loop
    flag = {"fused": True} if torch_takes(name, "fused") else {"foreach": False}
    theirs = _amp_run(lambda ps: torch_class(name)(ps, **KWARGS[name], **flag))
    assert ours[1] == theirs[1]  # the inf step is skipped, step counts included
    assert ours[2] == theirs[2]
    tol = rules.tolerance(torch.float32)
    for x, y in zip(theirs[0], ours[0]):
        torch.testing.assert_close(y, x, rtol=tol.rtol, atol=tol.atol)


def test_only_fused_declares_amp_scaling():
    p = [torch.zeros(2, requires_grad=True)]
    assert getattr(impl_torch.RMSprop(p, fused=True), "_step_supports_amp_scaling", False)
    assert getattr(impl_torch.Adagrad(p, impl="fused"), "_step_supports_amp_scaling", False)
    assert not getattr(impl_torch.Adagrad(p), "_step_supports_amp_scaling", False)
    assert not getattr(torch.optim.Adagrad(p), "_step_supports_amp_scaling", False)


def test_found_inf_skips_and_grad_scale_unscales_in_place():
    p = torch.ones(3, requires_grad=True)
    opt = impl_torch.Adagrad([p], impl="loop")
    p.grad = torch.full((3,), 4.0)
    opt.found_inf, opt.grad_scale = torch.tensor(1.0), torch.tensor(2.0)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(3)) and opt.state[p]["step"].item() == 0
    assert torch.equal(p.grad, torch.full((3,), 4.0))
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    assert torch.equal(p.grad, torch.full((3,), 2.0))  # as torch.optim's fused kernels leave it
    assert torch.equal(opt.state[p]["sum"], torch.full((3,), 4.0))


# --- devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", rule_names())
def test_fused_on_meta_raises_naming_the_device(name):
    p = torch.nn.Parameter(torch.ones(4, device="meta"))
    opt = ours_torch_class(name)([p], fused=True)
    p.grad = torch.ones(4, device="meta")
    with pytest.raises(RuntimeError, match=r"params\[0\] is on meta"):
        opt.step()
    with pytest.raises(RuntimeError, match="meta"):
        torch.optim.Adagrad([p], fused=True).step()


def test_functional_fused_on_meta_raises_before_any_update():
    rule = rules.Adagrad()
    cpu = torch.ones(2)
    meta = torch.ones(2, device="meta")
    states = [impl_torch.init_state(rule, cpu), impl_torch.init_state(rule, meta)]
    with pytest.raises(RuntimeError, match=r"params\[1\] is on meta"):
        impl_torch.step(rule, [cpu, meta], [torch.ones(2), torch.ones(2, device="meta")], states, impl="fused")
    assert torch.equal(cpu, torch.ones(2)) and states[0]["step"].item() == 0


def test_auto_on_meta_stays_eager():
    p = torch.nn.Parameter(torch.ones(1 << 20, device="meta"))
    opt = impl_torch.Adagrad([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[p]["sum"].device.type == "meta"
