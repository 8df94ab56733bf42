"""optax.rmsprop's ``initial_scale``, ``nesterov`` and ``bias_correction`` in impl_torch:
``rules.preset("rmsprop", "optax", ...)`` reproduces every optax.rmsprop setting in torch,
for every impl, judged against the float64 oracle and against optax itself."""

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from adaptbench.rules import reference

STEPS = 5

OPTIONS = {
    "initial_scale": dict(initial_scale=0.5),
    "bias_correction": dict(bias_correction=True),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "centered-bias_correction": dict(centered=True, bias_correction=True, initial_scale=0.2),
    "all-eps-outside": dict(
        centered=True, momentum=0.5, nesterov=True, bias_correction=True, initial_scale=0.2, eps_in_sqrt=False
    ),
}


def _grads(seed, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    # A zero first gradient: centered bias-corrected step 1 has v - m^2 exactly 0
    # otherwise, where any rounding decides the step (see test_rules_complex_and_optax_options.py).
    return [np.zeros(shape)] + [rng.standard_normal(shape) for _ in range(STEPS - 1)]


@pytest.mark.parametrize("impl", ["loop", "foreach", "differentiable"])
@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_options_match_the_oracle_float64(case, impl):
    rule = rules.preset("rmsprop", "optax", lr=0.01, weight_decay=0.01, **OPTIONS[case])
    rng = np.random.default_rng(1)
    p0 = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    # differentiable=True steps in place under autograd: plain tensors, not leaves requiring grad
    wrap = torch.tensor if impl == "differentiable" else lambda p: torch.nn.Parameter(torch.tensor(p))
    params = [wrap(p) for p in p0]
    kwargs = dict(differentiable=True) if impl == "differentiable" else dict(impl=impl)
    opt = impl_torch.RMSprop(params, **rule.as_dict(), **kwargs)
    want = [(p, reference.init_state(rule, p)) for p in p0]
    grads = list(zip(_grads(2), _grads(3, (5,))))
    tol = rules.tolerance("float64")
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = torch.tensor(g)
        opt.step()
        want = [reference.step(rule, wp, g, ws) for (wp, ws), g in zip(want, gs)]
        for p, (wp, ws) in zip(params, want):
            np.testing.assert_allclose(p.detach().numpy(), wp, rtol=tol.rtol, atol=tol.atol)
            for name in rule.state_names:
                np.testing.assert_allclose(opt.state[p][name].numpy(), ws[name], rtol=tol.rtol, atol=tol.atol)


def test_defaults_leave_torch_optims_rmsprop_bitwise():
    """Options off: exactly torch.optim.RMSprop (the ops are torch.optim's)."""
    rng = np.random.default_rng(4)
    p0, grads = rng.standard_normal(6).astype(np.float32), _grads(5, (6,))
    ours = torch.nn.Parameter(torch.tensor(p0))
    theirs = torch.nn.Parameter(torch.tensor(p0))
    a = impl_torch.RMSprop([ours], lr=0.01, centered=True, momentum=0.9, impl="loop")
    b = torch.optim.RMSprop([theirs], lr=0.01, centered=True, momentum=0.9, foreach=False)
    for g in grads:
        ours.grad = torch.tensor(g, dtype=torch.float32)
        theirs.grad = torch.tensor(g, dtype=torch.float32)
        a.step()
        b.step()
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_options_match_optax_rmsprop_float32(case):
    """The same run in torch (impl_torch) and in optax: within float32's tolerance."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    options = OPTIONS[case]
    rule = rules.preset("rmsprop", "optax", lr=0.01, **options)
    p0 = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    ours = torch.nn.Parameter(torch.tensor(p0))
    opt = impl_torch.optimizer_for(rule, [ours], impl="foreach")
    tx = optax.rmsprop(rule.lr, decay=rule.alpha, eps=rule.eps, **options)
    theirs = jax.numpy.asarray(p0)
    state = tx.init(theirs)
    tol = rules.tolerance("float32")
    for g in _grads(7):
        ours.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        u, state = tx.update(jax.numpy.asarray(g, jax.numpy.float32), state, theirs)
        theirs = optax.apply_updates(theirs, u)
        np.testing.assert_allclose(ours.detach().numpy(), np.asarray(theirs), rtol=tol.rtol, atol=tol.atol)


def test_fused_steps_the_options_like_loop():
    from impl_torch import fused

    if fused.unavailable_reason():
        pytest.skip(fused.unavailable_reason())
    rule = rules.preset("rmsprop", "optax", lr=0.01, **OPTIONS["all-eps-outside"])
    p0 = np.random.default_rng(8).standard_normal(64).astype(np.float32)
    params = {impl: torch.nn.Parameter(torch.tensor(p0)) for impl in ("loop", "fused")}
    opts = {impl: impl_torch.optimizer_for(rule, [p], impl=impl) for impl, p in params.items()}
    tol = rules.tolerance("float32")
    for g in _grads(9, (64,)):
        for impl, p in params.items():
            p.grad = torch.tensor(g, dtype=torch.float32)
            opts[impl].step()
    np.testing.assert_allclose(params["fused"].detach().numpy(), params["loop"].detach().numpy(), rtol=tol.rtol, atol=tol.atol)
