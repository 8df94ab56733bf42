"""Bad input and state from real reports (issue 13), impl_torch's optimizer classes.

Each test is one class of fault, kept with the case that showed it. What is right is
judged against torch.optim where torch.optim is right, against the float64 oracle
(``rules.reference``) where it is not, and is a clear error where nothing can be right.
docs/errors-and-edge-cases.md says what happens in each case and why.
"""

from __future__ import annotations

import copy

import pytest
import torch

import impl_torch
from adaptbench import rules

NAMES = ["adagrad", "adadelta", "rmsprop"]
TORCH = {"adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta, "rmsprop": torch.optim.RMSprop}
OURS = {"adagrad": impl_torch.Adagrad, "adadelta": impl_torch.Adadelta, "rmsprop": impl_torch.RMSprop}
FOREACH = {"loop": False, "foreach": True}


def _linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def _backward(model: torch.nn.Module, dtype=torch.float32, seed: int = 1) -> None:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model(x.to(dtype)).square().sum().backward()


def _snapshot(opt) -> dict:
    return {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}


# --- 4. a step that raises changes nothing -----------------------------------------------------


@pytest.mark.parametrize("name", ["adadelta", "rmsprop"])
def test_failed_step_creates_no_lazy_state(name):
    # The case: a dense Linear group, then a sparse Embedding group (sparse
    # gradients are refused by RMSprop and Adadelta). The step raises, and before the fix
    # opt.state had gained the Linear's two entries.
    lin, emb = _linear(), torch.nn.Embedding(5, 3, sparse=True)
    opt = OURS[name]([{"params": lin.parameters()}, {"params": emb.parameters()}])
    (lin(torch.ones(1, 3)).sum() + emb(torch.tensor([1])).sum()).backward()
    before = [p.detach().clone() for p in (*lin.parameters(), *emb.parameters())]
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]\[0\] has a sparse gradient"):
        opt.step()
    assert len(opt.state) == 0
    for p, b in zip((*lin.parameters(), *emb.parameters()), before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("name", NAMES)
def test_failed_step_leaves_earlier_groups_state_untouched(name):
    # Group 0 has state (one step done) and its model was converted to float64 since (its
    # state is cast at the next step); group 1 is made invalid behind the optimizer's back
    # (a state tensor of the wrong shape). No step counter moves and nothing is cast.
    a, b = _linear(0), _linear(1)
    opt = OURS[name]([{"params": a.parameters()}, {"params": b.parameters()}])
    _backward(a)
    _backward(b)
    opt.step()
    a.double()
    _backward(a, torch.float64)
    key = {"adagrad": "sum", "adadelta": "square_avg", "rmsprop": "square_avg"}[name]
    opt.state[b.bias][key] = torch.zeros(5)
    before_state, before_params = _snapshot(opt), [p.detach().clone() for p in opt.param_groups[0]["params"]]
    with pytest.raises(ValueError, match=rf"state\[param_groups\[1\]\['params'\]\[1\]\]\['{key}'\] has shape \(5,\)"):
        opt.step()
    assert _snapshot(opt).keys() == before_state.keys()
    for pid, s in _snapshot(opt).items():
        for k, v in s.items():
            assert torch.equal(v, before_state[pid][k]) and v.dtype == before_state[pid][k].dtype
    for p, before in zip(opt.param_groups[0]["params"], before_params):
        assert torch.equal(p, before)


# --- 6. a parameter converted after the optimizer was built ------------------------------------


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("name", NAMES)
def test_state_follows_a_parameter_converted_after_construction(name, impl):
    # model.double() after the optimizer (and its state) exist. torch.optim steps on with a
    # float32 state mixed into float64 math; ours casts the state to the parameter's dtype
    # at the next step, which is what torch.optim's own load_state_dict does. So the
    # reference is torch.optim after a state-dict round trip: bitwise equal.
    ours_model, theirs_model = _linear(), _linear()
    ours = OURS[name](ours_model.parameters(), impl=impl)
    theirs = TORCH[name](theirs_model.parameters(), foreach=FOREACH[impl])
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        _backward(model)
        opt.step()
        opt.zero_grad()
        model.double()
    theirs.load_state_dict(theirs.state_dict())
    for seed in (2, 3):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            _backward(model, torch.float64, seed)
            opt.step()
            opt.zero_grad()
    for po, pt in zip(ours_model.parameters(), theirs_model.parameters()):
        assert po.dtype == torch.float64 and torch.equal(po, pt)
        assert set(ours.state[po]) == set(theirs.state[pt])
        for key, value in theirs.state[pt].items():
            assert ours.state[po][key].dtype == value.dtype, key
            assert torch.equal(ours.state[po][key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_converted_parameter_state_is_cast_in_place_of_the_old(name):
    # The state dict entry is updated (not replaced): a reference taken before keeps
    # working, and the step counter (a CPU scalar, never cast) keeps counting.
    model = _linear()
    opt = OURS[name](model.parameters())
    _backward(model)
    opt.step()
    state = opt.state[model.weight]
    model.double()
    _backward(model, torch.float64)
    opt.step()
    assert state is opt.state[model.weight]
    assert state["step"].item() == 2 and state["step"].dtype == torch.float32
    assert all(v.dtype == torch.float64 for k, v in state.items() if k != "step")


def test_functional_step_still_refuses_mismatched_state():
    # The functional API takes its lists from the caller and never replaces their tensors:
    # a state of another dtype stays a TypeError naming it.
    rule = rules.preset("adagrad")
    p = torch.zeros(2, dtype=torch.float64)
    state = impl_torch.init_state(rule, p.float())
    with pytest.raises(TypeError, match=r"states\[0\]\['sum'\] has dtype torch.float32, but params\[0\]"):
        impl_torch.step(rule, [p], [torch.ones_like(p)], [state])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_state_follows_a_parameter_moved_to_another_device(name):
    # model.cuda() after the optimizer has state: torch.optim raises at its next step (its
    # kernels refuse CPU state with CUDA parameters); ours moves the state, and matches
    # torch.optim after a state-dict round trip (which moves it the same way).
    ours_model, theirs_model = _linear(), _linear()
    ours = OURS[name](ours_model.parameters(), impl="foreach")
    theirs = TORCH[name](theirs_model.parameters(), foreach=True)
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        _backward(model)
        opt.step()
        opt.zero_grad()
        model.cuda()
    theirs.load_state_dict(theirs.state_dict())
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)).cuda()
        model(x).square().sum().backward()
        opt.step()
    for po, pt in zip(ours_model.parameters(), theirs_model.parameters()):
        assert po.is_cuda and torch.equal(po, pt)
        for key, value in theirs.state[pt].items():
            assert ours.state[po][key].device == value.device, key
            assert torch.equal(ours.state[po][key], value), key
