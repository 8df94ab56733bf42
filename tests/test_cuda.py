"""Every implementation on a CUDA GPU against the float64 oracle and torch.optim
(``make bench-gpu`` runs this file first; skipped on a machine without CUDA).

Each step starts from the implementation's own parameters and state (re-synchronised
single-step checks, as tests/test_parity.py does on the CPU) and is compared with
``rules.reference.step`` within ``rules.tolerance``. The optimizer's ``"step"`` counters
stay CPU float32 tensors, as torch.optim keeps them: the fused impl passes them into
graphs of CUDA tensors, and Adagrad's ``lr_decay`` computes its rate from them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from adaptbench.rules import reference
from tests.peer_lookup import ours_torch_class, rule_names, torch_class

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = [
    ("adagrad", "torch", {"lr_decay": 0.1, "weight_decay": 0.01}),
    ("adagrad", "optax", {}),  # eps inside the root, s0 = 0.1, masked update
    ("adadelta", "torch", {"weight_decay": 0.1}),
    ("rmsprop", "torch", {"centered": True, "momentum": 0.5}),
    ("rmsprop", "seed", {"maximize": True}),
]
# The last tensor puts every rule's group over impl="auto"'s fused threshold.
SHAPES = [(257,), (16, 9), (), (300_000,)]
STEPS = 4


def _assert_step_close(actual: np.ndarray, expected: np.ndarray, old: np.ndarray, what: str):
    tol = rules.tolerance("float32")
    scale = np.maximum(np.maximum(np.abs(expected), np.abs(old)), np.abs(expected - old))
    bound = tol.rtol * scale + tol.atol * max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    err = np.abs(actual - expected)
    assert np.all(err <= bound), f"{what}: max error {err.max()} (bound {bound[np.argmax(err - bound)]})"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


@pytest.mark.parametrize("impl", ["loop", "foreach", "fused", "auto"])
@pytest.mark.parametrize("name, convention, overrides", CONFIGS, ids=lambda v: v if isinstance(v, str) else None)
def test_torch_impl_on_cuda_matches_the_oracle_after_every_step(name, convention, overrides, impl):
    rule = rules.preset(name, convention, **overrides)
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).cuda() for s in SHAPES]
    states = [impl_torch.init_state(rule, p) for p in params]
    for k in range(1, STEPS + 1):
        grads = [torch.randn(s, generator=gen).cuda() for s in SHAPES]
        before = [(_numpy(p), {n: (int(s["step"].item()) if n == "step" else _numpy(s[n])) for n in s})
                  for p, s in zip(params, states)]
        impl_torch.step(rule, params, grads, states, impl=impl)
        for i, (p, s, g, (p0, s0)) in enumerate(zip(params, states, grads, before)):
            expected, expected_state = reference.step(rule, p0, _numpy(g), s0)
            _assert_step_close(_numpy(p), expected, p0, f"step {k}, params[{i}]")
            for n in rule.state_names:
                _assert_step_close(_numpy(s[n]), expected_state[n], s0[n], f"step {k}, states[{i}][{n!r}]")
            assert s["step"].device.type == "cpu" and s["step"].item() == k
            assert p.device.type == "cuda"


_KEYWORDS = {
    "adagrad": {"lr": 0.05, "lr_decay": 0.25, "weight_decay": 0.01},
    "adadelta": {"lr": 0.5, "weight_decay": 0.01},
    "rmsprop": {"lr": 0.01, "centered": True, "momentum": 0.9},
}


@pytest.mark.parametrize("impl", ["loop", "foreach", "fused", "auto"])
@pytest.mark.parametrize("name", rule_names("torch"))
def test_optimizer_on_cuda_matches_torch_optim(name, impl):
    gen = torch.Generator().manual_seed(1)
    init = [torch.randn(s, generator=gen) for s in SHAPES]
    ours = [t.cuda().requires_grad_() for t in init]
    theirs = [t.cuda().requires_grad_() for t in init]
    opt = ours_torch_class(name)(ours, **_KEYWORDS[name], impl=impl)
    ref = torch_class(name)(theirs, **_KEYWORDS[name], foreach=False)
    for _ in range(STEPS):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, generator=gen).cuda()
            b.grad = a.grad.clone()
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)
        assert opt.state[a]["step"].device.type == "cpu" and opt.state[a]["step"].item() == STEPS


@pytest.mark.parametrize("via", ["make_step", "transformation"])
@pytest.mark.parametrize("name, convention, overrides", CONFIGS, ids=lambda v: v if isinstance(v, str) else None)
def test_jax_on_the_gpu_matches_the_oracle_after_every_step(name, convention, overrides, via):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import optax

    import impl_jax

    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("jax sees no GPU (install jax[cuda12])")
    rule = rules.preset(name, convention, **overrides)
    rng = np.random.default_rng(0)
    params = {f"p{i}": jax.device_put(jnp.asarray(rng.standard_normal(s), jnp.float32), gpu)
              for i, s in enumerate(SHAPES)}
    state = impl_jax.init(rule, params)
    if via == "make_step":
        step = impl_jax.make_step(rule)
    else:
        tx = impl_jax.transformation(rule)

        @jax.jit
        def step(p, s, g):
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s

    for k in range(1, STEPS + 1):
        grads = {key: jax.device_put(jnp.asarray(rng.standard_normal(v.shape), jnp.float32), gpu)
                 for key, v in params.items()}
        before = {key: np.asarray(v, np.float64) for key, v in params.items()}
        moments = {n: {key: np.asarray(v, np.float64) for key, v in getattr(state, n).items()}
                   for n in rule.state_names}
        params, state = step(params, state, grads)
        for key in params:
            s0 = {"step": k - 1, **{n: moments[n][key] for n in rule.state_names}}
            expected, expected_state = reference.step(rule, before[key], np.asarray(grads[key], np.float64), s0)
            _assert_step_close(np.asarray(params[key], np.float64), expected, before[key], f"step {k}, {key}")
            for n in rule.state_names:
                _assert_step_close(np.asarray(getattr(state, n)[key], np.float64), expected_state[n],
                                   moments[n][key], f"step {k}, state.{n}[{key!r}]")
            assert params[key].devices() == {gpu}
