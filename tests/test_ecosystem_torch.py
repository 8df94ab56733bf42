"""impl_torch's optimizers inside the PyTorch ecosystem (issue #6).

Already covered in tests/test_torch_optimizer.py and not repeated here: param groups with
different hyperparameters (``test_param_groups_with_different_hyperparameters``),
``add_param_group`` (``test_add_param_group``, ``test_add_param_group_validates``), StepLR
with a tensor lr (``test_lr_scheduler_and_tensor_lr``), state_dict round trip into a fresh
optimizer and cross-loading with torch.optim (``test_state_dict_round_trip``,
``test_state_dict_cross_loading``), grad None skipped (``test_grad_none_is_skipped``).
Here: OneCycleLR, LambdaLR per group, the state_dict of an optimizer grown by
add_param_group, torch.amp.GradScaler on CPU, and a small model trained end to end.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.peer_lookup import ours_torch_class, rule_names, torch_class
from tests.test_torch_optimizer import (
    FOREACH,
    assert_same,
    leaves,
    make_tensors,
    set_grads,
    step_scheduled_in_lockstep,
)

RULES = rule_names("torch")
IMPLS = ["loop", "foreach"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule", RULES)
def test_one_cycle_lr_matches_torch_optim(rule, impl):
    init, grads = make_tensors(torch.float32, 8)
    po, pt = leaves(init), leaves(init)
    ours, theirs = ours_torch_class(rule)(po, lr=0.01, impl=impl), torch_class(rule)(pt, lr=0.01, foreach=FOREACH[impl])
    kw = dict(max_lr=0.1, total_steps=8, cycle_momentum=False)
    step_scheduled_in_lockstep(ours, theirs, po, pt, grads, lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, **kw))


@pytest.mark.parametrize("rule", RULES)
def test_lambda_lr_per_group(rule):
    """A LambdaLR with one lambda per group: each group's rule follows its own lr."""
    init, grads = make_tensors(torch.float32, 4)
    po, pt = leaves(init), leaves(init)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05}]  # noqa: E731
    ours, theirs = ours_torch_class(rule)(groups(po), lr=0.02), torch_class(rule)(groups(pt), lr=0.02, foreach=True)
    lambdas = [lambda e: 0.9**e, lambda e: 1.0 / (1 + e)]
    step_scheduled_in_lockstep(ours, theirs, po, pt, grads, lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambdas))
    assert ours.group_rules()[1].lr == pytest.approx(0.05 / 5)


@pytest.mark.parametrize("rule", RULES)
def test_state_dict_after_add_param_group_round_trip(rule):
    """An optimizer grown by add_param_group saves and resumes like an uninterrupted one."""
    init, grads = make_tensors(torch.float32, 6)
    p_full = leaves(init)
    full = ours_torch_class(rule)(p_full[:2])
    full.add_param_group({"params": p_full[2:], "lr": 0.05})
    for gs in grads[:3]:
        set_grads(p_full, gs)
        full.step()
    saved, saved_params = copy.deepcopy(full.state_dict()), [p.detach().clone() for p in p_full]
    for gs in grads[3:]:
        set_grads(p_full, gs)
        full.step()

    p_res = leaves(saved_params)
    resumed = ours_torch_class(rule)(p_res[:2])
    resumed.add_param_group({"params": p_res[2:], "lr": 0.05})
    resumed.load_state_dict(saved)
    for gs in grads[3:]:
        set_grads(p_res, gs)
        resumed.step()
    assert_same(resumed, full, p_res, p_full)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rule", RULES)
def test_grad_scaler_skips_steps_with_inf_grads(rule, impl):
    """torch.amp.GradScaler on CPU: an inf in any grad skips the whole step (params and state untouched)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = ours_torch_class(rule)(model.parameters(), lr=0.05, impl=impl)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(8, 4)

    def backward(poison: bool):
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        if poison:
            model.weight.grad[0, 0] = float("inf")

    backward(False)
    scaler.step(opt)
    scaler.update()
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    scale = scaler.get_scale()

    backward(True)
    scaler.step(opt)  # skipped: found inf
    scaler.update()
    for p, before in zip(model.parameters(), params):
        assert torch.equal(p, before)
    after = opt.state_dict()["state"]
    for i in state:
        for k in state[i]:
            assert torch.equal(after[i][k], state[i][k]), (i, k)
    assert scaler.get_scale() == scale / 2


@pytest.mark.parametrize("rule", RULES)
def test_grad_scaler_unscales_like_torch_optim(rule):
    """Finite scaled grads: ours under GradScaler equals torch.optim under GradScaler, bitwise."""
    torch.manual_seed(0)
    m1 = torch.nn.Linear(4, 3)
    m2 = copy.deepcopy(m1)
    o1, o2 = ours_torch_class(rule)(m1.parameters(), lr=0.05), torch_class(rule)(m2.parameters(), lr=0.05, foreach=True)
    s1, s2 = torch.amp.GradScaler("cpu", init_scale=2.0**10), torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for _ in range(3):
        x = torch.randn(8, 4)
        for m, o, s in ((m1, o1, s1), (m2, o2, s2)):
            o.zero_grad()
            s.scale(m(x).square().mean()).backward()
            s.step(o)
            s.update()
    assert_same(o1, o2, list(m1.parameters()), list(m2.parameters()))


@pytest.mark.parametrize("rule", RULES)
def test_trains_a_module_like_torch_optim(rule):
    """nn.Module.parameters(), backward(), zero_grad(): 5 steps equal torch.optim bitwise."""
    torch.manual_seed(0)
    m1 = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    m1 = m1.to(memory_format=torch.channels_last)
    m2 = copy.deepcopy(m1)
    o1, o2 = ours_torch_class(rule)(m1.parameters(), lr=0.02), torch_class(rule)(m2.parameters(), lr=0.02, foreach=False)
    for _ in range(5):
        x = torch.randn(4, 2, 6, 6).to(memory_format=torch.channels_last)
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    assert_same(o1, o2, list(m1.parameters()), list(m2.parameters()))
