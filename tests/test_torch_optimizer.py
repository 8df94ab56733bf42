"""impl_torch's optimizer classes against torch.optim, step by step.

Under the torch convention our ``impl="loop"`` performs exactly the operations of
torch.optim's ``foreach=False`` path and ``impl="foreach"`` those of ``foreach=True``, so
parameters and states are compared bit for bit (``torch.equal``) after every step. The
only comparisons that are not bitwise are the bf16/fp16 runs against an fp32 run, which
are about precision, not about following torch.optim's order of operations.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import functional

TORCH = {"adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta, "rmsprop": torch.optim.RMSprop}
OURS = {"adagrad": impl_torch.Adagrad, "adadelta": impl_torch.Adadelta, "rmsprop": impl_torch.RMSprop}
FOREACH = {"loop": False, "foreach": True}

# (rule, torch.optim keyword arguments): the torch convention with its hyperparameters varied.
CONFIGS = [
    ("adagrad", {}),
    ("adagrad", {"weight_decay": 0.1}),
    ("adagrad", {"lr_decay": 0.05}),
    ("adagrad", {"maximize": True, "initial_accumulator_value": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01, "maximize": True, "eps": 1e-6}),
    ("adadelta", {}),
    ("adadelta", {"weight_decay": 0.1}),
    ("adadelta", {"maximize": True, "lr": 0.5, "rho": 0.5}),
    ("rmsprop", {}),
    ("rmsprop", {"weight_decay": 0.1}),
    ("rmsprop", {"centered": True}),
    ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"centered": True, "momentum": 0.5, "maximize": True, "weight_decay": 0.01, "alpha": 0.9}),
]


def config_id(config) -> str:
    rule, kw = config
    return rule + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "-defaults")


SHAPES = [(3, 4), (5,), (2, 3, 2), ()]


def make_tensors(dtype, steps, seed=0, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes] for _ in range(steps)]
    return init, grads


def leaves(init):
    return [t.clone().requires_grad_() for t in init]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()


def assert_same(ours, theirs, params_o, params_t, bitwise=True):
    """Params equal, and every state entry torch.optim keeps equal, for each param."""
    for i, (po, pt) in enumerate(zip(params_o, params_t)):
        check = torch.equal if bitwise else (lambda a, b: torch.allclose(a, b))
        assert check(po, pt), f"param {i}: max diff {(po - pt).abs().max().item()}"
        so, st = ours.state[po], theirs.state[pt]
        assert set(so) == set(st), f"param {i}: state keys {sorted(so)} != {sorted(st)}"
        for key in st:
            assert so[key].dtype == st[key].dtype and so[key].device == st[key].device, key
            assert check(so[key], st[key]), f"param {i} state {key!r} differs"


def step_scheduled_in_lockstep(ours, theirs, params_o, params_t, grads, scheduler):
    """Feed both optimizers the same grads, step each and its own ``scheduler(optimizer)``,
    and assert bitwise equality of params, state and every group's lr after every step."""
    so, st = scheduler(ours), scheduler(theirs)
    for gs in grads:
        set_grads(params_o, gs)
        set_grads(params_t, gs)
        ours.step()
        theirs.step()
        so.step()
        st.step()
        assert_same(ours, theirs, params_o, params_t)
        assert [float(g["lr"]) for g in ours.param_groups] == [float(g["lr"]) for g in theirs.param_groups]


def run_both(rule, kw, impl, dtype, steps=5):
    init, grads = make_tensors(dtype, steps)
    po, pt = leaves(init), leaves(init)
    ours = OURS[rule](po, **kw, impl=impl)
    theirs = TORCH[rule](pt, **kw, foreach=FOREACH[impl])
    for gs in grads:
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)
    return po


# --- equality with torch.optim ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_equals_torch_optim_bitwise(config, impl, dtype):
    # Bitwise: same torch ops with the same arguments in the same order as torch.optim's
    # _single_tensor_* (loop) / _multi_tensor_* (foreach) path.
    rule, kw = config
    run_both(rule, kw, impl, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_equals_torch_optim_low_precision(rule, impl, dtype):
    # Same ops as torch.optim in bf16/fp16 too, so still bitwise.
    run_both(rule, {"momentum": 0.5, "centered": True} if rule == "rmsprop" else {}, impl, dtype)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_loop_equals_foreach_on_cpu(config, impl):
    # On the CPU the foreach kernels fall back to the per-tensor ops and the CPU addcdiv
    # kernel computes (value * a) / b, so Adagrad's two torch orderings coincide there.
    # (On CUDA the single-tensor addcdiv computes value * (a / b): not bitwise there.)
    rule, kw = config
    init, grads = make_tensors(torch.float32, 4)
    pl, pf = leaves(init), leaves(init)
    ol, of = OURS[rule](pl, **kw, impl="loop"), OURS[rule](pf, **kw, impl="foreach")
    for gs in grads:
        set_grads(pl, gs)
        set_grads(pf, gs)
        ol.step()
        of.step()
    assert_same(ol, of, pl, pf)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_mixed_dtypes_in_one_group(rule, impl):
    # foreach groups tensors by (device, dtype), as torch.optim does.
    init = [torch.randn(4, dtype=torch.float32), torch.randn(3, dtype=torch.float64), torch.randn(2, 2)]
    po, pt = leaves(init), leaves(init)
    ours, theirs = OURS[rule](po, impl=impl), TORCH[rule](pt, foreach=FOREACH[impl])
    for _ in range(3):
        gs = [torch.randn_like(t) for t in init]
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_non_contiguous_params(rule, impl):
    base = torch.randn(6, 8)
    make = lambda: [base.clone()[:, ::2].detach().requires_grad_(), base.clone().t().detach().requires_grad_()]  # noqa: E731
    po, pt = make(), make()
    assert not po[0].is_contiguous() and not po[1].is_contiguous()
    ours, theirs = OURS[rule](po, impl=impl), TORCH[rule](pt, foreach=FOREACH[impl])
    for _ in range(3):
        gs = [torch.randn(6, 4), torch.randn(8, 6)]
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_param_groups_with_different_hyperparameters(rule, impl):
    init, grads = make_tensors(torch.float32, 4)
    extra = {
        "adagrad": {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.05},
        "adadelta": {"lr": 0.3, "rho": 0.5, "weight_decay": 0.05},
        "rmsprop": {"lr": 0.03, "alpha": 0.8, "centered": True, "momentum": 0.7},
    }[rule]
    po, pt = leaves(init), leaves(init)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], **extra}]  # noqa: E731
    ours = OURS[rule](groups(po), impl=impl)
    theirs = TORCH[rule](groups(pt), foreach=FOREACH[impl])
    assert ours.group_rules()[1] == rules.rule_class(rule)(**extra)
    for gs in grads:
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_lr_scheduler_and_tensor_lr(rule):
    # Schedulers write group["lr"]; the rule is rebuilt from the group at every step.
    init, grads = make_tensors(torch.float32, 6)
    po, pt = leaves(init), leaves(init)
    ours, theirs = OURS[rule](po, lr=torch.tensor(0.05)), TORCH[rule](pt, lr=torch.tensor(0.05), foreach=True)
    step_scheduled_in_lockstep(
        ours, theirs, po, pt, grads, lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    )
    assert ours.group_rules()[0].lr == pytest.approx(0.05 * 0.5**3)


# --- low precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_low_precision_stays_close_to_fp32(rule, impl, dtype):
    steps = 5
    init, grads = make_tensors(torch.float32, steps, shapes=[(64,), (8, 8)])
    p32 = leaves(init)
    plo = [t.to(dtype).requires_grad_() for t in init]
    o32, olo = OURS[rule](p32, impl=impl), OURS[rule](plo, impl=impl)
    for gs in grads:
        set_grads(p32, gs)
        set_grads(plo, [g.to(dtype) for g in gs])
        o32.step()
        olo.step()
    # Each step rounds p once more in the low dtype: allow a few of its ulps per step.
    spacing = {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}[dtype]
    for a, b in zip(plo, p32):
        assert a.dtype == dtype and torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b.detach(), rtol=0, atol=steps * spacing * 4)
        assert olo.state[a]["step"].dtype == torch.float32


# --- state dicts ----------------------------------------------------------------------------

STATEFUL = [
    ("adagrad", {"lr_decay": 0.1, "initial_accumulator_value": 0.1}),
    ("adadelta", {"weight_decay": 0.01}),
    ("rmsprop", {"centered": True, "momentum": 0.9}),
]


def _continue(opt, params, grads):
    for gs in grads:
        set_grads(params, gs)
        opt.step()


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("config", STATEFUL, ids=config_id)
def test_state_dict_round_trip(config, impl):
    rule, kw = config
    init, grads = make_tensors(torch.float32, 6)
    p_full = leaves(init)
    full = OURS[rule](p_full, **kw, impl=impl)
    _continue(full, p_full, grads[:3])
    saved_params = [p.detach().clone() for p in p_full]
    saved = copy.deepcopy(full.state_dict())
    _continue(full, p_full, grads[3:])

    p_resumed = leaves(saved_params)
    resumed = OURS[rule](p_resumed, **kw, impl=impl)
    resumed.load_state_dict(saved)
    assert resumed.state[p_resumed[0]]["step"].item() == 3
    _continue(resumed, p_resumed, grads[3:])
    assert_same(resumed, full, p_resumed, p_full)


@pytest.mark.parametrize("direction", ["torch-to-ours", "ours-to-torch"])
@pytest.mark.parametrize("config", STATEFUL, ids=config_id)
def test_state_dict_cross_loading(config, direction):
    rule, kw = config
    init, grads = make_tensors(torch.float32, 6)
    first_cls, second_cls = (TORCH[rule], OURS[rule]) if direction == "torch-to-ours" else (OURS[rule], TORCH[rule])
    # The uninterrupted reference: torch.optim all the way (foreach=True throughout).
    p_ref = leaves(init)
    ref = TORCH[rule](p_ref, **kw, foreach=True)
    _continue(ref, p_ref, grads)

    p1 = leaves(init)
    first = first_cls(p1, **kw, foreach=True)
    _continue(first, p1, grads[:3])
    saved = copy.deepcopy(first.state_dict())
    p2 = leaves([p.detach() for p in p1])
    second = second_cls(p2, **kw, foreach=True)
    second.load_state_dict(saved)
    _continue(second, p2, grads[3:])
    for a, b in zip(p2, p_ref):
        assert torch.equal(a, b)
    for a, b in zip(p2, p_ref):
        for key, value in ref.state[b].items():
            assert torch.equal(second.state[a][key], value), key
    if direction == "torch-to-ours":
        # Keys torch.optim's groups lack get torch.optim's meaning.
        group = second.param_groups[0]
        assert group["impl"] is None and group["eps_in_sqrt"] == rules.rule_class(rule)().eps_in_sqrt
        assert second.group_impls() == ["foreach"]


def test_state_is_keyed_like_torch_optim():
    p = torch.zeros(3, requires_grad=True)
    ada = impl_torch.Adagrad([p], initial_accumulator_value=0.5)
    # Adagrad creates its state in __init__, as torch.optim.Adagrad does.
    assert set(ada.state[p]) == {"step", "sum"} and torch.equal(ada.state[p]["sum"], torch.full((3,), 0.5))
    step = ada.state[p]["step"]
    assert step.dtype == torch.float32 and step.device.type == "cpu" and step.dim() == 0
    rms = impl_torch.RMSprop([p], centered=True, momentum=0.1)
    assert len(rms.state) == 0  # lazily, at the first step with a gradient
    p.grad = torch.ones(3)
    rms.step()
    assert set(rms.state[p]) == {"step", "square_avg", "grad_avg", "momentum_buffer"}
    dlt = impl_torch.Adadelta([p])
    dlt.step()
    assert set(dlt.state[p]) == {"step", "square_avg", "acc_delta"}
    assert dlt.state[p]["step"].item() == 1


# --- optimizer behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_grad_none_is_skipped(rule):
    init, grads = make_tensors(torch.float32, 3)
    po, pt = leaves(init), leaves(init)
    ours, theirs = OURS[rule](po), TORCH[rule](pt, foreach=True)
    for gs in grads:
        gs = [gs[0], None, gs[2], None]
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)
    assert torch.equal(po[1], init[1])


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_zero_grad(rule):
    p = torch.randn(4, requires_grad=True)
    opt = OURS[rule]([p])
    p.grad = torch.ones(4)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(4))
    opt.zero_grad()
    assert p.grad is None
    before = p.detach().clone()
    opt.step()  # nothing to do
    assert torch.equal(p, before)


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_step_with_closure(rule):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16)
    w = torch.zeros(3, requires_grad=True)
    opt = OURS[rule]([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(20)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_add_param_group(rule):
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)
    ta, tb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours, theirs = OURS[rule]([a]), TORCH[rule]([ta], foreach=True)
    lr = {"adagrad": 0.2, "adadelta": 0.5, "rmsprop": 0.02}[rule]
    ours.add_param_group({"params": [b], "lr": lr})
    theirs.add_param_group({"params": [tb], "lr": lr})
    for _ in range(3):
        g1, g2 = torch.randn(3), torch.randn(2)
        set_grads([a, b], [g1, g2])
        set_grads([ta, tb], [g1, g2])
        ours.step()
        theirs.step()
        assert_same(ours, theirs, [a, b], [ta, tb])


@pytest.mark.parametrize(
    "rule, bad, match",
    [
        ("adagrad", {"lr": -1.0}, "lr"),
        ("adagrad", {"lr_decay": -0.1}, "lr_decay"),
        ("adagrad", {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
        ("adadelta", {"rho": 1.5}, "rho"),
        ("adadelta", {"eps": -1e-6}, "eps"),
        ("rmsprop", {"alpha": 2.0}, "alpha"),
        ("rmsprop", {"momentum": -0.5}, "momentum"),
        ("rmsprop", {"weight_decay": float("nan")}, "weight_decay"),
        ("rmsprop", {"impl": "bogus"}, "impl"),
        ("rmsprop", {"foreach": True, "impl": "loop"}, "foreach"),
        ("adadelta", {"capturable": True}, "capturable"),
        ("adagrad", {"differentiable": True, "foreach": True}, "differentiable"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()),
)
def test_add_param_group_validates(rule, bad, match):
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)
    opt = OURS[rule]([a])
    with pytest.raises((ValueError, TypeError), match=match):
        opt.add_param_group({"params": [b], **bad})
    assert len(opt.param_groups) == 1 and b not in opt.state


# --- keyword mapping and refusals -----------------------------------------------------------


def _param():
    return [torch.randn(2, requires_grad=True)]


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_signature_matches_torch_optim(rule):
    ours = inspect.signature(OURS[rule]).parameters
    theirs = inspect.signature(TORCH[rule]).parameters
    for name, param in theirs.items():
        assert name in ours, name
        assert ours[name].default == param.default, name
        assert ours[name].kind == param.kind, name
    # The extras are keyword-only.
    for name in set(ours) - set(theirs):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert "impl" in ours and "eps_in_sqrt" in ours


@pytest.mark.parametrize(
    "kw, impl",
    [({}, "auto"), ({"foreach": True}, "foreach"), ({"foreach": False}, "loop"),
     ({"impl": "loop"}, "loop"), ({"impl": "foreach", "foreach": True}, "foreach"),
     ({"impl": "loop", "foreach": False}, "loop"), ({"fused": False}, "auto"),
     ({"fused": None, "foreach": False}, "loop"), ({"differentiable": False}, "auto")],
    ids=lambda v: v if isinstance(v, str) else ("-".join(f"{k}={x}" for k, x in v.items()) or "defaults"),
)
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_keyword_mapping(rule, kw, impl):
    opt = OURS[rule](_param(), **kw)
    assert opt.group_impls() == [impl]


@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_maximize_goes_into_rule(rule):
    opt = OURS[rule](_param(), maximize=True, eps_in_sqrt=True)
    assert opt.group_rules()[0].maximize is True and opt.group_rules()[0].eps_in_sqrt is True


@pytest.mark.parametrize(
    "rule, kw, exc, match",
    [
        ("adagrad", {"foreach": True, "impl": "loop"}, ValueError, "foreach=True conflicts"),
        ("adadelta", {"foreach": False, "impl": "foreach"}, ValueError, "foreach=False conflicts"),
        ("rmsprop", {"impl": "nope"}, ValueError, "impl must be one of"),
        ("adagrad", {"impl": 3}, TypeError, "impl"),
        ("rmsprop", {"fused": True, "impl": "loop"}, ValueError, "fused=True conflicts"),
        ("adagrad", {"fused": True, "foreach": True}, ValueError, "foreach=True and fused=True"),
        ("adadelta", {"capturable": True}, ValueError, "capturable=True is not supported"),
        ("rmsprop", {"capturable": True}, ValueError, "capturable"),
        ("adagrad", {"differentiable": True, "foreach": True}, ValueError, "differentiable=True runs"),
        ("rmsprop", {"differentiable": True, "impl": "fused"}, ValueError, "differentiable"),
        ("adadelta", {"differentiable": 1}, TypeError, "differentiable"),
        ("rmsprop", {"foreach": "yes"}, TypeError, "foreach"),
        ("adagrad", {"lr": -0.1}, ValueError, "lr"),
        ("adagrad", {"lr": torch.ones(2)}, ValueError, "lr"),
        ("rmsprop", {"centered": 1}, TypeError, "centered"),
        ("adagrad", {"mask_zero_accumulator": "no"}, TypeError, "mask_zero_accumulator"),
        ("adadelta", {"eps_in_sqrt": None}, TypeError, "eps_in_sqrt"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_refusals(rule, kw, exc, match):
    with pytest.raises(exc, match=match):
        OURS[rule](_param(), **kw)


def test_fused_keyword_selects_the_registered_impl(monkeypatch):
    # The fused impl slots in by registering; the keyword then selects whatever is registered.
    calls = []

    def fake_fused(rule, params, grads, states):
        calls.append(len(params))
        functional._loop(rule, params, grads, states)

    monkeypatch.setitem(functional._IMPL_TABLE, "fused", fake_fused)
    assert "fused" in impl_torch.IMPLS
    p = _param()
    opt = impl_torch.Adagrad(p, fused=True)
    assert opt.group_impls() == ["fused"]
    p[0].grad = torch.ones(2)
    opt.step()
    assert calls == [1]
    with pytest.raises(ValueError, match="fused=True conflicts"):
        impl_torch.RMSprop(_param(), fused=True, impl="loop")


@pytest.mark.parametrize("rule", ["adadelta", "rmsprop"])
def test_sparse_grads_refused_except_by_adagrad(rule):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = OURS[rule](emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(TypeError, match="sparse.*impl_torch.Adagrad, torch.optim.Adagrad"):
        opt.step()
    assert torch.equal(emb.weight, before)


def test_invalid_group_fails_before_any_update():
    a, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    opt = impl_torch.RMSprop([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt.param_groups[1]["alpha"] = 5.0  # made invalid behind the optimizer's back
    before = a.detach().clone()
    with pytest.raises(ValueError, match="alpha"):
        opt.step()
    assert torch.equal(a, before)
    assert all(s["step"].item() == 0 for s in opt.state.values())


# --- optimizer_for ----------------------------------------------------------------------------


@pytest.mark.parametrize("convention", rules.CONVENTIONS)
@pytest.mark.parametrize("rule", ["adagrad", "adadelta", "rmsprop"])
def test_optimizer_for(rule, convention):
    r = rules.preset(rule, convention)
    opt = impl_torch.optimizer_for(r, _param(), impl="loop")
    assert type(opt) is OURS[rule]
    assert opt.group_rules() == [r] and opt.group_impls() == ["loop"]


def test_optimizer_for_rejects_non_rules():
    with pytest.raises(TypeError, match="rule"):
        impl_torch.optimizer_for({"lr": 0.1}, _param())


def test_optimizer_for_torch_preset_equals_torch_optim():
    init, grads = make_tensors(torch.float32, 4)
    po, pt = leaves(init), leaves(init)
    ours = impl_torch.optimizer_for(rules.preset("rmsprop", "torch", momentum=0.5), po, impl="foreach")
    theirs = torch.optim.RMSprop(pt, momentum=0.5, foreach=True)
    for gs in grads:
        set_grads(po, gs)
        set_grads(pt, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, po, pt)


# --- CUDA (skipped on a machine without one) -----------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_equals_torch_optim_bitwise_cuda():
    # One test over every config and impl, so that a machine without CUDA skips once.
    # Bitwise on CUDA too: the same kernels with the same arguments as torch.optim.
    for rule, kw in CONFIGS:
        for impl in ("loop", "foreach"):
            init, grads = make_tensors(torch.float32, 4)
            po = [t.cuda().requires_grad_() for t in init]
            pt = [t.cuda().requires_grad_() for t in init]
            ours, theirs = OURS[rule](po, **kw, impl=impl), TORCH[rule](pt, **kw, foreach=FOREACH[impl])
            for gs in grads:
                set_grads(po, [g.cuda() for g in gs])
                set_grads(pt, [g.cuda() for g in gs])
                ours.step()
                theirs.step()
                assert_same(ours, theirs, po, pt)


def test_adagrad_uses_each_groups_initial_accumulator_value():
    # Deliberate difference: torch.optim.Adagrad fills "sum" with the constructor's value
    # for every group (and self.defaults' value for lazily created state).
    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    opt = impl_torch.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 0.5}])
    opt.add_param_group({"params": [c], "initial_accumulator_value": 0.25})
    assert [opt.state[p]["sum"][0].item() for p in (a, b, c)] == [0.0, 0.5, 0.25]
    theirs = torch.optim.Adagrad([{"params": [a.detach().clone().requires_grad_()]},
                                  {"params": [b.detach().clone().requires_grad_()], "initial_accumulator_value": 0.5}])
    assert [s["sum"][0].item() for s in theirs.state.values()] == [0.0, 0.0]
