"""impl_torch's functional API: init_state, step, the impl table, argument checks, and the
switches torch.optim lacks (eps_in_sqrt, mask_zero_accumulator, Adadelta eps outside).

Cross-framework parity lives in tests/test_parity.py; the float64 oracle is used here only
for the switches that torch.optim cannot check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import ForeachOps, TensorOps, functional

# Rules beyond the torch convention: every switch torch.optim lacks, and the presets.
EXTENSIONS = [
    rules.Adagrad(eps_in_sqrt=True),
    rules.Adagrad(mask_zero_accumulator=True, eps=0.0),
    rules.Adagrad(eps_in_sqrt=True, mask_zero_accumulator=True, lr_decay=0.1, maximize=True, weight_decay=0.1),
    rules.Adadelta(eps_in_sqrt=False),
    rules.Adadelta(eps_in_sqrt=False, maximize=True, weight_decay=0.1, rho=0.5),
    rules.RMSprop(eps_in_sqrt=True),
    rules.RMSprop(eps_in_sqrt=True, centered=True, momentum=0.5),
    rules.SGD(momentum=0.9, dampening=0.3, weight_decay=0.1),
    rules.SGD(momentum=0.9, nesterov=True, maximize=True, weight_decay=0.1, decoupled_weight_decay=True),
    *[rules.preset(r, c) for r in rules.RULES for c in rules.CONVENTIONS if c in rules.RULES[r].PRESETS],
]


def rule_id(rule) -> str:
    default = type(rule)()
    changed = [f"{k}={v}" for k, v in rule.as_dict().items() if v != getattr(default, k)]
    return rule.name + ("-" + "-".join(changed) if changed else "-defaults")


def make(rule, dtype=torch.float64, shapes=((3, 4), (5,), ()), steps=4, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    params = [torch.tensor(a, dtype=dtype) for a in init]
    states = [impl_torch.init_state(rule, p) for p in params]
    return init, grads, params, states


# --- init_state -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "rule",
    [rules.Adagrad(initial_accumulator_value=0.25), rules.Adadelta(), rules.RMSprop(centered=True, momentum=0.9)],
    ids=rule_id,
)
def test_init_state(rule, dtype):
    p = torch.randn(3, 2).to(dtype)
    state = impl_torch.init_state(rule, p)
    assert list(state) == ["step", *rule.state_names]
    assert state["step"].dtype == torch.float32 and state["step"].device.type == "cpu"
    assert state["step"].dim() == 0 and state["step"].item() == 0
    for name in rule.state_names:
        fill = 0.25 if name == "sum" else 0.0
        assert state[name].dtype == dtype and state[name].shape == p.shape
        assert torch.equal(state[name], torch.full_like(p, fill))


def test_init_state_preserves_strides():
    p = torch.randn(4, 6).t()
    state = impl_torch.init_state(rules.RMSprop(), p)
    assert state["square_avg"].stride() == p.stride()


def test_init_state_refuses():
    with pytest.raises(TypeError, match="rule"):
        impl_torch.init_state("adagrad", torch.zeros(2))
    with pytest.raises(TypeError, match="floating"):
        impl_torch.init_state(rules.Adagrad(), torch.zeros(2, dtype=torch.int64))


# --- step: impls agree, switches follow the oracle ------------------------------------------------


def test_impls_listed():
    assert impl_torch.IMPLS == ("loop", "foreach", "fused", "auto")
    assert "loop" in impl_torch.IMPLS and list(impl_torch.IMPLS) == ["loop", "foreach", "fused", "auto"]
    assert impl_torch.DEFAULT_IMPL in impl_torch.IMPLS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("rule", EXTENSIONS, ids=rule_id)
def test_loop_equals_foreach_on_cpu(rule, dtype):
    # Same ops in the same order, and the CPU foreach kernels loop over the same per-tensor
    # kernels, so bitwise on the CPU.
    _, grads, p_loop, s_loop = make(rule, dtype)
    _, _, p_fe, s_fe = make(rule, dtype)
    for gs in grads:
        gs = [torch.tensor(g, dtype=dtype) for g in gs]
        impl_torch.step(rule, p_loop, gs, s_loop, impl="loop")
        impl_torch.step(rule, p_fe, gs, s_fe, impl="foreach")
    for a, b, sa, sb in zip(p_loop, p_fe, s_loop, s_fe):
        assert torch.equal(a, b)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", EXTENSIONS, ids=rule_id)
def test_switches_follow_the_oracle_fp64(rule, impl):
    init, grads, params, states = make(rule, torch.float64)
    ref = [(np.asarray(a), rules.reference.init_state(rule, a)) for a in init]
    tol = rules.tolerance("float64")
    for gs in grads:
        impl_torch.step(rule, params, [torch.tensor(g) for g in gs], states, impl=impl)
        ref = [rules.reference.step(rule, p, g, s) for (p, s), g in zip(ref, gs)]
        for p, s, (rp, rs) in zip(params, states, ref):
            np.testing.assert_allclose(p.numpy(), rp, rtol=tol.rtol, atol=tol.atol)
            if rule.STEP_IN_STATE:
                assert s["step"].item() == rs["step"]
            for name in rule.state_names:
                np.testing.assert_allclose(s[name].numpy(), rs[name], rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_mask_zero_accumulator(impl):
    # Zero gradient, zero accumulator, eps = 0: torch.optim's 0/0 = NaN, optax's 0.
    p = [torch.ones(3)]
    g = [torch.tensor([0.0, 1.0, 0.0])]
    masked = rules.Adagrad(eps=0.0, mask_zero_accumulator=True)
    state = [impl_torch.init_state(masked, p[0])]
    impl_torch.step(masked, p, g, state, impl=impl)
    assert torch.equal(p[0], torch.tensor([1.0, 1.0 - 0.01, 1.0]))
    plain = masked.replace(mask_zero_accumulator=False)
    q = [torch.ones(3)]
    impl_torch.step(plain, q, g, [impl_torch.init_state(plain, q[0])], impl=impl)
    assert torch.isnan(q[0][0]) and torch.isnan(q[0][2])


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_none_grads_are_skipped_and_grads_untouched(impl):
    rule = rules.RMSprop(maximize=True, weight_decay=0.1)
    params = [torch.ones(2), torch.ones(3)]
    states = [impl_torch.init_state(rule, p) for p in params]
    g = torch.full((3,), 2.0)
    impl_torch.step(rule, params, [None, g], states, impl=impl)
    assert torch.equal(params[0], torch.ones(2)) and states[0]["step"].item() == 0
    assert states[1]["step"].item() == 1 and not torch.equal(params[1], torch.ones(3))
    assert torch.equal(g, torch.full((3,), 2.0))


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_mixed_dtypes_and_strides(impl):
    rule = rules.Adadelta()
    params = [torch.randn(4, 3).t(), torch.randn(5, dtype=torch.float64), torch.randn(2).to(torch.bfloat16)]
    ref = [p.clone() for p in params]
    states = [impl_torch.init_state(rule, p) for p in params]
    grads = [torch.randn_like(p) for p in params]
    impl_torch.step(rule, params, grads, states, impl=impl)
    for p, r, g, s in zip(params, ref, grads, states):
        sr = impl_torch.init_state(rule, r)
        impl_torch.step(rule, [r], [g], [sr], impl="loop")
        assert torch.equal(p, r) and p.dtype == r.dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_close_to_cpu():
    # One test over every rule and impl, so that a machine without CUDA skips once.
    for rule in EXTENSIONS:
        for impl in ("loop", "foreach"):
            _, grads, p_cpu, s_cpu = make(rule, torch.float32)
            _, _, p_gpu, s_gpu = make(rule, torch.float32)
            p_gpu = [p.cuda() for p in p_gpu]
            s_gpu = [{k: (v if k == "step" else v.cuda()) for k, v in s.items()} for s in s_gpu]
            for gs in grads:
                gs = [torch.tensor(g, dtype=torch.float32) for g in gs]
                impl_torch.step(rule, p_cpu, gs, s_cpu, impl=impl)
                impl_torch.step(rule, p_gpu, [g.cuda() for g in gs], s_gpu, impl=impl)
            for a, b in zip(p_cpu, p_gpu):
                torch.testing.assert_close(a, b.cpu())


# --- ops namespaces ------------------------------------------------------------------------


def test_ops_namespaces_agree():
    x, a, b = torch.rand(5) + 0.5, torch.rand(5) + 0.5, torch.rand(5) + 0.5
    for name, args in [
        ("mul_", (0.5,)), ("add_", (a,)), ("addcmul_", (a, b)), ("addcdiv_", (a, b)),
        ("lerp_", (a, 0.25)), ("sqrt_", ()), ("div_", (b,)), ("zero_unless_positive_", (a - 1,)),
    ]:
        single = getattr(TensorOps, name)(x.clone(), *args)
        listed = getattr(ForeachOps, name)([x.clone()], *[[t] if isinstance(t, torch.Tensor) else t for t in args])
        assert torch.equal(single, listed[0]), name
    assert torch.equal(TensorOps.add(x, a, alpha=2.0), ForeachOps.add([x], [a], alpha=2.0)[0])
    assert torch.equal(ForeachOps.mul([x, a], [2.0, 3.0])[1], a * 3.0)
    assert TensorOps.multi_tensor is False and ForeachOps.multi_tensor is True


# --- argument checks: a clear error naming the argument, nothing modified --------------------


def _valid(rule=rules.Adagrad()):
    params = [torch.ones(3), torch.ones(2, 2)]
    grads = [torch.ones(3), torch.ones(2, 2)]
    states = [impl_torch.init_state(rule, p) for p in params]
    return rule, params, grads, states


def _corrupt_grad(kind):
    def f(rule, params, grads, states):
        grads[1] = {
            "shape": torch.ones(4),
            "dtype": torch.ones(2, 2, dtype=torch.float64),
            "type": np.ones((2, 2)),
            "sparse": torch.ones(4).to_sparse(),
        }[kind]
    return f


BAD = [
    ("grad-shape", _corrupt_grad("shape"), ValueError, r"grads\[1\] has shape \(4,\), but params\[1\] has shape \(2, 2\)"),
    ("grad-dtype", _corrupt_grad("dtype"), TypeError, r"grads\[1\] has dtype torch.float64"),
    ("grad-not-tensor", _corrupt_grad("type"), TypeError, r"grads\[1\] must be a torch.Tensor"),
    ("grad-sparse-shape", _corrupt_grad("sparse"), ValueError, r"grads\[1\] \(sparse, shape \(4,\).*does not match params\[1\]"),
    ("state-shape", lambda r, p, g, s: s[1].__setitem__("sum", torch.ones(4)), ValueError, r"states\[1\]\['sum'\] has shape"),
    ("state-dtype", lambda r, p, g, s: s[1].__setitem__("sum", torch.ones(2, 2, dtype=torch.float16)), TypeError, r"states\[1\]\['sum'\] has dtype"),
    ("state-missing", lambda r, p, g, s: s[1].pop("sum"), ValueError, r"states\[1\]\['sum'\] is missing"),
    ("step-missing", lambda r, p, g, s: s[1].pop("step"), ValueError, r"states\[1\]\['step'\] is missing"),
    ("step-not-tensor", lambda r, p, g, s: s[1].__setitem__("step", 0), TypeError, r"states\[1\]\['step'\] must be a torch.Tensor"),
    ("step-shape", lambda r, p, g, s: s[1].__setitem__("step", torch.zeros(2)), ValueError, r"states\[1\]\['step'\] must be a one-element"),
    ("param-int", lambda r, p, g, s: p.__setitem__(1, torch.ones(2, 2, dtype=torch.int32)), TypeError, r"params\[1\] must have a floating or complex dtype"),
    ("param-repeated", lambda r, p, g, s: p.__setitem__(1, p[0]), ValueError, r"params\[1\] appears more than once"),
    ("lengths", lambda r, p, g, s: g.pop(), ValueError, "same length"),
]


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("name, corrupt, exc, match", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_raise_before_any_update(name, corrupt, exc, match, impl):
    rule, params, grads, states = _valid()
    corrupt(rule, params, grads, states)
    before_p = params[0].clone()
    before_s = {k: v.clone() for k, v in states[0].items()}
    with pytest.raises(exc, match=match):
        impl_torch.step(rule, params, grads, states, impl=impl)
    # Entry 0 was valid and comes first: it must not have been updated.
    assert torch.equal(params[0], before_p)
    assert all(torch.equal(states[0][k], v) for k, v in before_s.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_mismatch_raises():
    rule, params, grads, states = _valid()
    grads[1] = grads[1].cuda()
    with pytest.raises(ValueError, match=r"grads\[1\] is on cuda"):
        impl_torch.step(rule, params, grads, states)


def test_bad_rule_impl_and_containers():
    rule, params, grads, states = _valid()
    with pytest.raises(TypeError, match="rule must be"):
        impl_torch.step({"lr": 0.1}, params, grads, states)
    with pytest.raises(ValueError, match="impl must be one of"):
        impl_torch.step(rule, params, grads, states, impl="fast")
    with pytest.raises(TypeError, match="sequences"):
        impl_torch.step(rule, params[0], grads[0], states[0])


def test_check_false_skips_validation_only():
    rule, params, grads, states = _valid()
    rule2, params2, grads2, states2 = _valid()
    impl_torch.step(rule, params, grads, states, impl="foreach")
    impl_torch.step(rule2, params2, grads2, states2, impl="foreach", check=False)
    assert all(torch.equal(a, b) for a, b in zip(params, params2))


def test_impl_torch_never_imports_jax():
    import subprocess
    import sys

    code = "import sys, impl_torch; bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'optax')]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_register_impl(monkeypatch):
    monkeypatch.setattr(functional, "_IMPL_TABLE", dict(functional._IMPL_TABLE))
    seen = []
    impl_torch.register_impl("spy", lambda *args: seen.append(args))
    assert impl_torch.IMPLS == ("loop", "foreach", "fused", "auto", "spy")
    rule, params, grads, states = _valid()
    impl_torch.step(rule, params, grads, states, impl="spy")
    assert len(seen) == 1 and seen[0][0] is rule
    with pytest.raises(ValueError, match="already registered"):
        impl_torch.register_impl("spy", print)
    with pytest.raises(TypeError, match="callable"):
        impl_torch.register_impl("other", 3)
