"""A step reuses what the previous step checked (``impl_torch/plan.py``) only while
nothing it depends on changed.

Differential: two identical optimizers take the same steps; one keeps its record of the
last validated step, the other has it dropped before every step (so it always runs the full
check). After a change between steps, both must do exactly the same: raise the same
exception with the same message, or end with bitwise the same parameters and state.
"""

from __future__ import annotations

import pytest
import torch

import impl_torch

from adaptbench import rules
from tests import registry_cases
from tests.peer_lookup import ours_torch_class, rule_names


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def _backward(model, seed: int) -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
    dtype = next(model.parameters()).dtype
    model(x.to(dtype)).square().sum().backward()


# ``Tensor.grad``'s setter refuses another shape or dtype; ``.data`` of the gradient does not.
def _set_bad_grad_shape(model, opt):
    p = next(model.parameters())
    p.grad.data = torch.zeros(p.numel() + 1)


def _set_bad_grad_dtype(model, opt):
    p = next(model.parameters())
    p.grad.data = p.grad.data.double()


def _set_sparse_grad(model, opt):
    p = list(model.parameters())[1]
    p.grad = p.grad.to_sparse()


def _drop_one_grad(model, opt):
    list(model.parameters())[2].grad = None


def _convert_model(model, opt):
    model.double()
    _backward(model, 99)


def _param_data_reshaped(model, opt):
    p = list(model.parameters())[1]
    p.data = torch.zeros(p.numel() + 2)
    p.grad = torch.ones_like(p)


def _param_data_converted_after_backward(model, opt):
    """The parameter changes while its gradient (float32, as validated) does not."""
    p = next(model.parameters())
    p.data = p.data.double()


def _state_tensor_replaced_by_wrong_shape(model, opt):
    p = next(model.parameters())
    name = next(k for k in opt.state[p] if k != "step")
    opt.state[p][name] = torch.zeros(7)


def _state_tensor_replaced_same_shape(model, opt):
    p = next(model.parameters())
    name = next(k for k in opt.state[p] if k != "step")
    opt.state[p][name] = torch.full_like(opt.state[p][name], 0.25)


def _state_key_deleted(model, opt):
    p = next(model.parameters())
    name = next(k for k in opt.state[p] if k != "step")
    del opt.state[p][name]


def _state_cleared(model, opt):
    opt.state.clear()


def _param_added(model, opt):
    extra = torch.nn.Parameter(torch.ones(3))
    extra.grad = torch.full_like(extra, 0.5)
    opt.param_groups[0]["params"].append(extra)


def _params_reordered(model, opt):
    opt.param_groups[0]["params"].reverse()


def _lr_changed(model, opt):
    opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 0.5


def _weight_decay_changed(model, opt):
    opt.param_groups[0]["weight_decay"] = 0.1


def _flag_made_int(model, opt):
    opt.param_groups[0]["maximize"] = 1


def _impl_changed(model, opt):
    opt.param_groups[0]["foreach"] = True


def _bad_lr(model, opt):
    opt.param_groups[0]["lr"] = -1.0


CHANGES = [
    _set_bad_grad_shape,
    _set_bad_grad_dtype,
    _set_sparse_grad,
    _drop_one_grad,
    _convert_model,
    _param_data_reshaped,
    _param_data_converted_after_backward,
    _state_tensor_replaced_by_wrong_shape,
    _state_tensor_replaced_same_shape,
    _state_key_deleted,
    _state_cleared,
    _param_added,
    _params_reordered,
    _lr_changed,
    _weight_decay_changed,
    _flag_made_int,
    _impl_changed,
    _bad_lr,
]


def _run(name, change, cached: bool, **kw):
    model = _model()
    opt = ours_torch_class(name)(model.parameters(), **kw)
    for seed in range(3):
        _backward(model, seed)
        if not cached:
            opt.__dict__.pop("_plans", None)
        opt.step()
        opt.zero_grad()
    _backward(model, 3)
    change(model, opt)
    if not cached:
        opt.__dict__.pop("_plans", None)
    try:
        opt.step()
        outcome = None
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        outcome = (type(exc), str(exc))
    params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    state = [
        {k: v.clone() for k, v in opt.state[p].items()} for g in opt.param_groups for p in g["params"]
    ]
    return outcome, params, state


@pytest.mark.parametrize("impl", ["loop", "foreach", "auto"])
@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("name", rule_names())
def test_a_change_between_steps_is_seen_as_by_the_full_check(name, change, impl):
    kw = {"impl": impl} if change is not _impl_changed else {}
    kw.update(registry_cases.every_state(rules.RULES[name]))
    cached = _run(name, change, True, **kw)
    full = _run(name, change, False, **kw)
    assert cached[0] == full[0]
    for a, b in zip(cached[1], full[1], strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    for a, b in zip(cached[2], full[2], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("name", rule_names())
def test_a_tensor_lr_changed_in_place_takes_effect(name):
    """A tensor hyperparameter is the same object after ``fill_``: never taken as unchanged."""
    steps = {}
    for cached in (True, False):
        model = _model()
        lr = torch.tensor(0.01)
        opt = ours_torch_class(name)(model.parameters(), lr=lr)
        for seed in range(4):
            if seed == 2:
                lr.fill_(0.5)
            _backward(model, seed)
            if not cached:
                opt.__dict__.pop("_plans", None)
            opt.step()
            opt.zero_grad()
        steps[cached] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(steps[True], steps[False], strict=True):
        assert torch.equal(a, b)


def test_the_record_is_reused_and_dropped_at_load():
    """The record exists after a step, is dropped by ``load_state_dict`` (it refers to the
    replaced state) and is rebuilt by the next step."""
    model = _model()
    opt = impl_torch.Adagrad(model.parameters())
    _backward(model, 0)
    opt.step()
    first = opt._plans[0]
    opt.step()
    assert opt._plans[0] is first
    opt.load_state_dict(opt.state_dict())
    assert "_plans" not in opt.__dict__
    opt.step()
    assert opt._plans[0] is not first
