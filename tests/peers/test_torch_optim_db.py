"""torch's own optimizer database through impl_torch: configurations and error inputs.

Every ``optim_inputs_func`` configuration of the Adagrad, Adadelta and RMSprop entries of
``optim_db`` (``tests/peers/torch_optim_db.py``) steps impl_torch's class and torch.optim's
side by side on the same small model, for every impl:

- ``"loop"`` against torch.optim's ``foreach=False`` and ``"foreach"`` against
  ``foreach=True``: bitwise equal parameters and state after every step;
- ``"auto"`` (the default) against torch.optim's default: bitwise (at these sizes auto
  steps eagerly);
- ``"fused"`` on representative configurations (every compile costs seconds): within
  ``rules.tolerance`` of torch.optim's ``foreach=False``.

Every ``optim_error_inputs_func`` input raises (or warns) with the same exception type in
every impl; its message is compared separately, and each wording that differs is a named
expected failure.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from adaptbench import rules
from tests.peers import torch_optim_db as db

CONFIGS = db.configs()
CONFIG_IDS = [f"{name}-{desc}" for name, desc, _ in CONFIGS]
STEPS = 6

# One configuration per rule with the most options on, plus Adagrad's lr_decay (the one
# hyperparameter computed per step): each costs a torch.compile. Adam's and AdamW's richest
# configuration in optim_db is "amsgrad" (amsgrad with weight_decay; their "maximize" has
# weight_decay but not amsgrad).
FUSED_CONFIGS = {
    ("Adagrad", "lr_decay"),
    ("Adadelta", "maximize, weight_decay"),
    ("RMSprop", "maximize, centered, weight_decay, w/ momentum"),
    ("Adam", "amsgrad"),
    ("AdamW", "amsgrad"),
    ("SGD", "dampening"),  # the first step's buffer is the gradient, later ones damped
}


def _model(seed: int = 0) -> list[torch.Tensor]:
    """weight (10, 5), bias (10,), a 0-dim scale: the shapes of a linear layer plus a scalar."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(10, 5, generator=gen).requires_grad_(),
        torch.randn(10, generator=gen).requires_grad_(),
        torch.randn((), generator=gen).requires_grad_(),
    ]


def _inputs(steps: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(5, generator=gen) for _ in range(steps)]


def _loss(params, x) -> torch.Tensor:
    weight, bias, scale = params
    return (scale * torch.tanh(weight @ x + bias)).square().sum()


def _trajectory(optimizer, params, steps: int = STEPS) -> list:
    """(params, state) snapshots after each step, gradients from the model's loss."""
    out = []
    for x in _inputs(steps):
        optimizer.zero_grad()
        _loss(params, x).backward()
        optimizer.step()
        out.append((
            [p.detach().clone() for p in params],
            [{k: v.clone() for k, v in optimizer.state[p].items()} for p in params],
        ))
    return out


def _run_pair(name, kwargs, ours_flags, torch_flags):
    a, b = _model(), _model()
    theirs = db.TORCH[name](a, **kwargs, **torch_flags)
    ours = db.OURS[name](b, **kwargs, **ours_flags)
    return _trajectory(theirs, a), _trajectory(ours, b)


def _assert_bitwise(theirs, ours):
    for k, ((tp, ts), (op, os_)) in enumerate(zip(theirs, ours)):
        for i, (x, y) in enumerate(zip(tp, op)):
            assert torch.equal(x, y), f"step {k + 1}, param {i}: max diff {(x - y).abs().max()}"
        for i, (x, y) in enumerate(zip(ts, os_)):
            assert x.keys() == y.keys(), f"step {k + 1}, param {i}: state keys {sorted(x)} vs {sorted(y)}"
            for key in x:
                assert torch.equal(x[key], y[key]), f"step {k + 1}, param {i}, state {key!r}"


EAGER = {"loop": ({"impl": "loop"}, {"foreach": False}),
         "foreach": ({"impl": "foreach"}, {"foreach": True}),
         "auto": ({}, {})}


@pytest.mark.parametrize("impl", sorted(EAGER))
@pytest.mark.parametrize("name, desc, kwargs", CONFIGS, ids=CONFIG_IDS)
def test_config_trajectory_is_torch_optims_bitwise(name, desc, kwargs, impl):
    ours_flags, torch_flags = EAGER[impl]
    theirs, ours = _run_pair(name, kwargs, ours_flags, torch_flags)
    _assert_bitwise(theirs, ours)


FUSED = [c for c in CONFIGS if (c[0], c[1]) in FUSED_CONFIGS]


@pytest.mark.parametrize("name, desc, kwargs", FUSED, ids=[f"{n}-{d}" for n, d, _ in FUSED])
def test_config_trajectory_fused_within_tolerance(name, desc, kwargs):
    theirs, ours = _run_pair(name, kwargs, {"impl": "fused"}, {"foreach": False})
    tol = rules.tolerance(torch.float32)
    for k, ((tp, ts), (op, os_)) in enumerate(zip(theirs, ours)):
        for x, y in zip(tp, op):
            torch.testing.assert_close(y, x, rtol=tol.rtol, atol=tol.atol, msg=lambda m: f"step {k + 1}: {m}")
        for x, y in zip(ts, os_):
            for key in x:
                torch.testing.assert_close(y[key], x[key], rtol=tol.rtol, atol=tol.atol)


def test_fused_selection_exists():
    """The fused selection names configurations the database really has."""
    assert len(FUSED) == len(FUSED_CONFIGS)


# --- error inputs ---------------------------------------------------------------------------

ERRORS = [(name, i, e.optimizer_error_input.desc) for name in db.RULES for i, e in enumerate(db.error_inputs(name))]
ERROR_IDS = [f"{name}-{desc}" for name, _, desc in ERRORS]
IMPL_FLAGS = {"auto": {}, "loop": {"impl": "loop"}, "foreach": {"impl": "foreach"}, "fused": {"impl": "fused"}}


def _raised(cls, error_input, extra: dict):
    """What constructing (and, for step errors, stepping) ``cls`` with the error input
    does: ("raises", exception) or ("warns", warning) or ("nothing", None)."""
    oi = error_input.optimizer_error_input
    step_error = error_input.error_on.name == "STEP_ERROR"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opt = cls(oi.params, **oi.kwargs, **extra)
            if step_error:
                opt.step()
        except Exception as exc:  # the type is the comparison
            return "raises", exc
    relevant = [w for w in caught if issubclass(w.category, error_input.error_type)] if issubclass(
        error_input.error_type, Warning) else []
    if relevant:
        return "warns", relevant[0].message
    return "nothing", None


# Inputs torch.optim.Adam/AdamW refuse and ours accepts on purpose: impl_torch reads a
# one-element tensor hyperparameter as its value in every impl (``_hyper_value``), so no impl
# needs a float lr or float betas, and the two betas need not be of one kind. The database
# gives these ``params=None`` (torch.optim refuses before it reads the params), so ours,
# having accepted the keywords, fails on the params with a TypeError instead. With
# ``impl="loop"``/``"fused"`` the input's ``foreach=True`` conflicts with the impl, a
# ValueError of ours, so only the impls listed here differ.
ACCEPTED = {
    "lr as Tensor doesn't work with foreach & not capturable": (
        ("auto", "foreach"), "ours accepts a Tensor lr with foreach=True (read as its value)"),
    "betas must be either both floats or both Tensors": (
        tuple(IMPL_FLAGS), "ours accepts a float and a Tensor beta together (each read as its value)"),
    "betas\\[0\\] as a Tensor is not supported for capturable=False and foreach=True": (
        ("auto", "foreach"), "ours accepts Tensor betas with foreach=True (read as their values)"),
}


def _type_cases():
    for name, index, desc in ERRORS:
        impls, reason = ACCEPTED.get(desc, ((), ""))
        for impl in sorted(IMPL_FLAGS):
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if impl in impls else []
            yield pytest.param(name, index, desc, impl, marks=marks, id=f"{name}-{desc}-{impl}")


@pytest.mark.parametrize("name, index, desc, impl", list(_type_cases()))
def test_error_input_raises_torchs_exception_type(name, index, desc, impl):
    error_input = db.error_inputs(name)[index]
    kind, exc = _raised(db.OURS[name], error_input, IMPL_FLAGS[impl])
    expected = error_input.error_type
    if issubclass(expected, Warning):
        assert kind == "warns", f"expected a {expected.__name__}, got {kind} {exc!r}"
    else:
        assert kind == "raises" and type(exc) is expected, f"expected {expected.__name__}, got {kind} {exc!r}"
    theirs_kind, theirs = _raised(db.TORCH[name], db.error_inputs(name)[index], {})
    assert theirs_kind == kind  # the database describes the installed torch.optim


# Messages whose wording is ours on purpose: our checks run in the rules' dataclasses, shared
# with impl_jax, and name the argument in the project's own words.
OWN_WORDING = {
    "lr_decay must be bigger than 0": "rules.Adagrad: 'lr_decay must be finite and >= 0, got -0.5'",
    "rho should be between 0 and 1": "rules.Adadelta: 'rho must lie in [0, 1], got 1.1'",
    "momentum should be between 0 and 1": "rules.RMSprop/SGD: 'momentum must be finite and >= 0, got -1.0'",
    "beta1 should be between 0 and 1": "rules.Adam/AdamW: 'beta1 (betas[0]) must lie in [0, 1), got 1.0'",
    "weight_decay should > 0": "rules.Adam/AdamW: 'weight_decay must be finite and >= 0, got -1.0'",
}


def _message_cases():
    for name, index, desc in ERRORS:
        marks = []
        if desc in OWN_WORDING:
            marks.append(pytest.mark.xfail(strict=True, reason=f"message wording: {OWN_WORDING[desc]}"))
        elif desc in ACCEPTED:
            marks.append(pytest.mark.xfail(strict=True, reason=ACCEPTED[desc][1]))
        yield pytest.param(name, index, desc, marks=marks, id=f"{name}-{desc}")


@pytest.mark.parametrize("name, index, desc", list(_message_cases()))
def test_error_input_message_matches_torchs(name, index, desc):
    error_input = db.error_inputs(name)[index]
    kind, exc = _raised(db.OURS[name], error_input, {})
    assert kind != "nothing"
    assert re.search(error_input.error_regex, str(exc)), str(exc)
