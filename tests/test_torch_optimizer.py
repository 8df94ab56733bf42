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
from impl_torch.updates import STATE_AT_CONSTRUCTION, UPDATES
from tests.peer_lookup import dense_only_rules, ours_torch_class, rule_names, sparse_rules, torch_class
from tests.registry_cases import (
    bad_values,
    base,
    computes,
    halved,
    make_peer,
    option_cases,
    peer_cases,
    switches,
    terms,
)
from tests.rule_options import completed

#: Every registered rule impl_torch has math for, and those of them with a torch.optim peer.
RULES = [name for name in rules.RULES if name in UPDATES]
PEERED = [name for name in RULES if name in rule_names("torch")]
OURS = {name: ours_torch_class(name) for name in RULES}
TORCH = {name: torch_class(name) for name in PEERED}
FOREACH = {"loop": False, "foreach": True}


def _cases(name, cases):
    return [pytest.param(rule, id=f"{name}-{case}") for case, rule in cases]


# Rules under torch.optim's defaults, with each option, all of them together, and all of
# them with other numbers: CONFIGS those torch.optim computes, OWN_CONFIGS every one.
CONFIGS = [
    param
    for name in PEERED
    for cases in [peer_cases(base(rules.RULES[name]), "torch")]
    for param in _cases(name, cases + [("all-halved", halved(cases[-1][1]))])
]
OWN_CONFIGS = [
    param
    for name in RULES
    for cases in [option_cases(base(rules.RULES[name]))]
    for param in _cases(name, cases + [("all-halved", halved(cases[-1][1]))])
]
# Every term on (every state tensor kept), per rule: torch.optim's and ours.
PEER_ALL = [pytest.param(peer_cases(base(rules.RULES[n]), "torch")[-1][1], id=n) for n in PEERED]
OWN_ALL = [pytest.param(option_cases(base(rules.RULES[n]))[-1][1], id=n) for n in RULES]


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


def step_scheduled_in_lockstep(ours, theirs, params_o, params_t, grads, scheduler, bitwise=True):
    """Feed both optimizers the same grads, step each and its own ``scheduler(optimizer)``,
    and assert equality (bitwise, or ``allclose``) of params, state and every group's lr
    after every step."""
    so, st = scheduler(ours), scheduler(theirs)
    for gs in grads:
        set_grads(params_o, gs)
        set_grads(params_t, gs)
        ours.step()
        theirs.step()
        so.step()
        st.step()
        assert_same(ours, theirs, params_o, params_t, bitwise=bitwise)
        assert [float(g["lr"]) for g in ours.param_groups] == [float(g["lr"]) for g in theirs.param_groups]


def step_in_lockstep(ours, theirs, params_o, params_t, grads):
    for gs in grads:
        set_grads(params_o, gs)
        set_grads(params_t, gs)
        ours.step()
        theirs.step()
        assert_same(ours, theirs, params_o, params_t)


def run_both(rule, impl, dtype, steps=5):
    init, grads = make_tensors(dtype, steps)
    po, pt = leaves(init), leaves(init)
    ours = OURS[rule.name](po, **rule.as_dict(), impl=impl)
    theirs = make_peer(rule, "torch", pt, foreach=FOREACH[impl])
    step_in_lockstep(ours, theirs, po, pt, grads)
    return po


# --- equality with torch.optim ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", CONFIGS)
def test_equals_torch_optim_bitwise(rule, impl, dtype):
    # Bitwise: same torch ops with the same arguments in the same order as torch.optim's
    # _single_tensor_* (loop) / _multi_tensor_* (foreach) path.
    run_both(rule, impl, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", [pytest.param(base(rules.RULES[n]), id=n) for n in PEERED] + PEER_ALL)
def test_equals_torch_optim_low_precision(rule, impl, dtype):
    # Same ops as torch.optim in bf16/fp16 too, so still bitwise.
    run_both(rule, impl, dtype)


@pytest.mark.parametrize("rule", OWN_CONFIGS)
def test_loop_equals_foreach_on_cpu(rule):
    # On the CPU the foreach kernels fall back to the per-tensor ops and the CPU addcdiv
    # kernel computes (value * a) / b, so Adagrad's two torch orderings coincide there.
    # (On CUDA the single-tensor addcdiv computes value * (a / b): not bitwise there.)
    init, grads = make_tensors(torch.float32, 4)
    pl, pf = leaves(init), leaves(init)
    cls = OURS[rule.name]
    ol, of = cls(pl, **rule.as_dict(), impl="loop"), cls(pf, **rule.as_dict(), impl="foreach")
    for gs in grads:
        set_grads(pl, gs)
        set_grads(pf, gs)
        ol.step()
        of.step()
    assert_same(ol, of, pl, pf)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", PEERED)
def test_mixed_dtypes_in_one_group(rule, impl):
    # foreach groups tensors by (device, dtype), as torch.optim does.
    init = [torch.randn(4, dtype=torch.float32), torch.randn(3, dtype=torch.float64), torch.randn(2, 2)]
    po, pt = leaves(init), leaves(init)
    ours, theirs = OURS[rule](po, impl=impl), TORCH[rule](pt, foreach=FOREACH[impl])
    step_in_lockstep(ours, theirs, po, pt, [[torch.randn_like(t) for t in init] for _ in range(3)])


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", PEERED)
def test_non_contiguous_params(rule, impl):
    base_tensor = torch.randn(6, 8)
    make = lambda: [base_tensor.clone()[:, ::2].detach().requires_grad_(), base_tensor.clone().t().detach().requires_grad_()]  # noqa: E731
    po, pt = make(), make()
    assert not po[0].is_contiguous() and not po[1].is_contiguous()
    ours, theirs = OURS[rule](po, impl=impl), TORCH[rule](pt, foreach=FOREACH[impl])
    step_in_lockstep(ours, theirs, po, pt, [[torch.randn(6, 4), torch.randn(8, 6)] for _ in range(3)])


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", PEER_ALL)
def test_param_groups_with_different_hyperparameters(rule, impl):
    """A second group with every term on (``PEER_ALL``) beside one of torch.optim's
    defaults; but the fields that fill a state's initial value, which torch.optim.Adagrad
    reads from its constructor for every group (tests/test_rule_adagrad.py)."""
    default = rules.RULES[rule.name]()

    def fills_state(field):
        try:
            changed = default.replace(**{field: getattr(rule, field)})
        except ValueError:  # valid only with other fields (SGD's nesterov needs momentum)
            return False
        return any(changed.initial_value(n) != default.initial_value(n) for n in rule.STATE)

    rule = rule.replace(**{field: getattr(default, field) for field in rule.as_dict() if fills_state(field)})
    init, grads = make_tensors(torch.float32, 4)
    po, pt = leaves(init), leaves(init)
    ours = OURS[rule.name]([{"params": po[:2]}, {"params": po[2:], **rule.as_dict()}], impl=impl)
    theirs = TORCH[rule.name]([{"params": pt[:2]}, {"params": pt[2:], **rule.peer_kwargs("torch")}],
                              foreach=FOREACH[impl])
    assert ours.group_rules()[1] == rule
    step_in_lockstep(ours, theirs, po, pt, grads)


@pytest.mark.parametrize("rule", PEERED)
def test_lr_scheduler_and_tensor_lr(rule):
    # Schedulers write group["lr"]; the rule is rebuilt from the group at every step.
    init, grads = make_tensors(torch.float32, 6)
    po, pt = leaves(init), leaves(init)
    try:
        theirs, impl = TORCH[rule](pt, lr=torch.tensor(0.05), foreach=True), "foreach"
    except ValueError:  # torch.optim.Adam(W) takes a tensor lr on its foreach path only when capturable
        theirs, impl = TORCH[rule](pt, lr=torch.tensor(0.05), foreach=False), "loop"
    ours = OURS[rule](po, lr=torch.tensor(0.05), impl=impl)
    # Ours reads a tensor lr's value; where the rule computes with lr (Adam's lr / (1 -
    # beta1**t)) torch.optim does that in the tensor's float32, ours in float64: 1 ulp apart.
    step_scheduled_in_lockstep(
        ours, theirs, po, pt, grads, lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
        bitwise=rules.RULES[rule]().multiplier_only("lr"),
    )
    assert ours.group_rules()[0].lr == pytest.approx(0.05 * 0.5**3)


# --- low precision ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", RULES)
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
        if rules.RULES[rule].STEP_IN_STATE:
            assert olo.state[a]["step"].dtype == torch.float32


# --- state dicts ----------------------------------------------------------------------------


def _continue(opt, params, grads):
    for gs in grads:
        set_grads(params, gs)
        opt.step()


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("rule", OWN_ALL)
def test_state_dict_round_trip(rule, impl):
    cls = OURS[rule.name]
    init, grads = make_tensors(torch.float32, 6)
    p_full = leaves(init)
    full = cls(p_full, **rule.as_dict(), impl=impl)
    _continue(full, p_full, grads[:3])
    saved_params = [p.detach().clone() for p in p_full]
    saved = copy.deepcopy(full.state_dict())
    _continue(full, p_full, grads[3:])

    p_resumed = leaves(saved_params)
    resumed = cls(p_resumed, **rule.as_dict(), impl=impl)
    resumed.load_state_dict(saved)
    if rule.STEP_IN_STATE:
        assert resumed.state[p_resumed[0]]["step"].item() == 3
    _continue(resumed, p_resumed, grads[3:])
    assert_same(resumed, full, p_resumed, p_full)


@pytest.mark.parametrize("direction", ["torch-to-ours", "ours-to-torch"])
@pytest.mark.parametrize("rule", PEER_ALL)
def test_state_dict_cross_loading(rule, direction):
    init, grads = make_tensors(torch.float32, 6)
    ours = lambda ps: OURS[rule.name](ps, **rule.as_dict(), foreach=True)  # noqa: E731
    theirs = lambda ps: make_peer(rule, "torch", ps, foreach=True)  # noqa: E731
    first_make, second_make = (theirs, ours) if direction == "torch-to-ours" else (ours, theirs)
    # The uninterrupted reference: torch.optim all the way (foreach=True throughout).
    p_ref = leaves(init)
    ref = theirs(p_ref)
    _continue(ref, p_ref, grads)

    p1 = leaves(init)
    first = first_make(p1)
    _continue(first, p1, grads[:3])
    saved = copy.deepcopy(first.state_dict())
    p2 = leaves([p.detach() for p in p1])
    second = second_make(p2)
    second.load_state_dict(saved)
    _continue(second, p2, grads[3:])
    for a, b in zip(p2, p_ref):
        assert torch.equal(a, b)
    for a, b in zip(p2, p_ref):
        for key, value in ref.state[b].items():
            assert torch.equal(second.state[a][key], value), key
    if direction == "torch-to-ours":
        # Keys torch.optim's groups lack get torch.optim's meaning: the rule's defaults.
        group = second.param_groups[0]
        assert group["impl"] is None and second.group_impls() == ["foreach"]
        defaults = rules.RULES[rule.name]().torch_keywords()
        for field in set(defaults) - set(rule.peer_kwargs("torch")):
            assert group[field] == defaults[field], field


@pytest.mark.parametrize("rule", OWN_ALL + [pytest.param(p.values[0], id=f"{p.id}-torch") for p in PEER_ALL])
def test_state_is_keyed_like_torch_optim(rule):
    """``step`` (a CPU float32 scalar, for the rules that count steps) and the rule's
    ``state_names``, created when the parameter is added where torch.optim's class does so
    (``state_at_construction``: Adagrad's), else at the first step, and no entry for a
    parameter without state (SGD without momentum); the same keys as torch.optim's where it
    has the rule."""
    p = torch.zeros(3, requires_grad=True)
    opt = OURS[rule.name]([p], **rule.as_dict())
    if rule.name in STATE_AT_CONSTRUCTION:
        assert set(opt.state[p]) == {"step", *rule.state_names}
        for name in rule.state_names:
            assert torch.equal(opt.state[p][name], torch.full((3,), rule.initial_value(name)))
    else:
        assert len(opt.state) == 0
    p.grad = torch.ones(3)
    opt.step()
    keys = set(functional.state_keys(rule))
    assert set(opt.state.get(p, {})) == keys and (p in opt.state) == bool(keys)
    if rule.STEP_IN_STATE:
        step = opt.state[p]["step"]
        assert step.dtype == torch.float32 and step.device.type == "cpu" and step.dim() == 0 and step.item() == 1
    if rule.name in PEERED and computes(rule, "torch"):
        q = torch.zeros(3, requires_grad=True)
        theirs = make_peer(rule, "torch", [q])
        q.grad = torch.ones(3)
        theirs.step()
        assert set(theirs.state.get(q, {})) == set(opt.state.get(p, {})) and (q in theirs.state) == (p in opt.state)


# --- optimizer behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", PEERED)
def test_grad_none_is_skipped(rule):
    init, grads = make_tensors(torch.float32, 3)
    po, pt = leaves(init), leaves(init)
    ours, theirs = OURS[rule](po), TORCH[rule](pt, foreach=True)
    step_in_lockstep(ours, theirs, po, pt, [[gs[0], None, gs[2], None] for gs in grads])
    assert torch.equal(po[1], init[1])


@pytest.mark.parametrize("rule", RULES)
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


@pytest.mark.parametrize("rule", RULES)
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


@pytest.mark.parametrize("rule", PEERED)
def test_add_param_group(rule):
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)
    ta, tb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours, theirs = OURS[rule]([a]), TORCH[rule]([ta], foreach=True)
    lr = 2 * rules.RULES[rule]().lr
    ours.add_param_group({"params": [b], "lr": lr})
    theirs.add_param_group({"params": [tb], "lr": lr})
    step_in_lockstep(ours, theirs, [a, b], [ta, tb], [[torch.randn(3), torch.randn(2)] for _ in range(3)])


def _value_id(v) -> str:
    return v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "defaults"


# Flags every optimizer class takes, refused alike whatever the rule.
FLAG_REFUSALS = [
    ({"impl": "bogus"}, ValueError, "impl must be one of"),
    ({"impl": 3}, TypeError, "impl"),
    ({"foreach": True, "impl": "loop"}, ValueError, "foreach=True conflicts"),
    ({"foreach": False, "impl": "foreach"}, ValueError, "foreach=False conflicts"),
    ({"fused": True, "impl": "loop"}, ValueError, "fused=True conflicts"),
    ({"fused": True, "foreach": True}, ValueError, "foreach=True and fused=True"),
    ({"capturable": True}, ValueError, "capturable=True is not supported"),
    ({"differentiable": True, "foreach": True}, ValueError, "differentiable=True runs"),
    ({"differentiable": True, "impl": "fused"}, ValueError, "differentiable"),
    ({"differentiable": 1}, TypeError, "differentiable"),
    ({"foreach": "yes"}, TypeError, "foreach"),
]
# What every rule's specification refuses (ValueError naming the field), and its switches
# given a non-bool (TypeError naming it), a 2-element tensor lr.
REFUSALS = [
    pytest.param(name, kw, exc, match, id=f"{name}-{_value_id(kw)}")
    for name in RULES
    for kw, exc, match in [
        *FLAG_REFUSALS,
        *(({field: value}, ValueError, field) for field, value in bad_values(rules.RULES[name])),
        *(({field: 1}, TypeError, field) for field in switches(rules.RULES[name])),
        ({"lr": torch.ones(2)}, ValueError, "lr"),
    ]
]


@pytest.mark.parametrize("rule, bad, exc, match", REFUSALS)
def test_add_param_group_validates(rule, bad, exc, match):
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)
    opt = OURS[rule]([a])
    with pytest.raises((ValueError, TypeError), match=match):
        opt.add_param_group({"params": [b], **bad})
    assert len(opt.param_groups) == 1 and b not in opt.state


# --- keyword mapping and refusals -----------------------------------------------------------


def _param():
    return [torch.randn(2, requires_grad=True)]


@pytest.mark.parametrize("rule", RULES)
def test_signature_is_torch_optims_then_keyword_only_extras(rule):
    """``impl_torch.<Class>``'s parameters are torch.optim's, in its order, kinds and
    defaults (the rule's ``TORCH_POSITIONAL``/``TORCH_KEYWORD_ONLY`` where it has no
    torch.optim peer), then the extras, keyword-only."""
    cls = getattr(impl_torch, OURS[rule].__name__)
    assert cls is OURS[rule]
    ours = list(inspect.signature(cls).parameters.values())
    if rule in TORCH:
        theirs = list(inspect.signature(TORCH[rule]).parameters.values())
        assert [(p.name, p.kind, p.default) for p in ours[:len(theirs)]] == \
               [(p.name, p.kind, p.default) for p in theirs]
    else:
        spec = rules.RULES[rule]
        theirs = [None] * (1 + len(spec.TORCH_POSITIONAL) + len(spec.TORCH_KEYWORD_ONLY))
        assert [p.name for p in ours[:len(theirs)]] == ["params", *spec.TORCH_POSITIONAL, *spec.TORCH_KEYWORD_ONLY]
    extras = ours[len(theirs):]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extras), extras
    assert "impl" in [p.name for p in extras]


@pytest.mark.parametrize(
    "kw, impl",
    [({}, "auto"), ({"foreach": True}, "foreach"), ({"foreach": False}, "loop"),
     ({"impl": "loop"}, "loop"), ({"impl": "foreach", "foreach": True}, "foreach"),
     ({"impl": "loop", "foreach": False}, "loop"), ({"fused": False}, "auto"),
     ({"fused": None, "foreach": False}, "loop"), ({"differentiable": False}, "auto")],
    ids=_value_id,
)
@pytest.mark.parametrize("rule", RULES)
def test_keyword_mapping(rule, kw, impl):
    opt = OURS[rule](_param(), **kw)
    assert opt.group_impls() == [impl]


@pytest.mark.parametrize("rule", RULES)
def test_switches_go_into_rule(rule):
    default = rules.RULES[rule]()
    flips = {name: not getattr(default, name) for name in switches(rules.RULES[rule])}
    overrides = completed(lambda o: default.replace(**o), flips, {t: 0.5 for t in terms(rules.RULES[rule])})
    got = OURS[rule](_param(), **overrides).group_rules()[0]
    assert {name: getattr(got, name) for name in overrides} == overrides


@pytest.mark.parametrize("rule, kw, exc, match", REFUSALS)
def test_refusals(rule, kw, exc, match):
    # a flag torch.optim's class lacks (Adagrad's capturable) is not a keyword of ours either
    unknown = set(kw) - set(inspect.signature(OURS[rule]).parameters)
    if unknown:
        exc, match = TypeError, f"unexpected keyword argument '{unknown.pop()}'"
    with pytest.raises(exc, match=match):
        OURS[rule](_param(), **kw)


@pytest.mark.parametrize("rule", RULES)
def test_fused_keyword_selects_the_registered_impl(monkeypatch, rule):
    # The fused impl slots in by registering; the keyword then selects whatever is registered.
    calls = []

    def fake_fused(rule, params, grads, states):
        calls.append(len(params))
        functional._loop(rule, params, grads, states)

    monkeypatch.setitem(functional._IMPL_TABLE, "fused", fake_fused)
    assert "fused" in impl_torch.IMPLS
    p = _param()
    opt = OURS[rule](p, fused=True)
    assert opt.group_impls() == ["fused"]
    p[0].grad = torch.ones(2)
    opt.step()
    assert calls == [1]
    with pytest.raises(ValueError, match="fused=True conflicts"):
        OURS[rule](_param(), fused=True, impl="loop")


@pytest.mark.parametrize("rule", [name for name in RULES if name in dense_only_rules()])
def test_sparse_grads_refused_by_rules_without_a_sparse_step(rule):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    opt = OURS[rule](emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    takers = ".*".join(f"impl_torch.{OURS[n].__name__}" for n in sparse_rules())
    with pytest.raises(TypeError, match=f"sparse.*{takers}"):
        opt.step()
    assert torch.equal(emb.weight, before)


@pytest.mark.parametrize("rule", RULES)
def test_invalid_group_fails_before_any_update(rule):
    a, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    opt = OURS[rule]([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    field, value = bad_values(rules.RULES[rule])[-1]
    opt.param_groups[1][field] = value  # made invalid behind the optimizer's back
    before = a.detach().clone()
    with pytest.raises(ValueError, match=field):
        opt.step()
    assert torch.equal(a, before)
    assert all(s["step"].item() == 0 for s in opt.state.values())


# --- optimizer_for ----------------------------------------------------------------------------


@pytest.mark.parametrize("rule, convention", [(n, c) for n in RULES for c in rules.RULES[n].PRESETS],
                         ids=lambda v: v)
def test_optimizer_for(rule, convention):
    r = rules.preset(rule, convention)
    opt = impl_torch.optimizer_for(r, _param(), impl="loop")
    assert type(opt) is OURS[rule]
    assert opt.group_rules() == [r] and opt.group_impls() == ["loop"]


def test_optimizer_for_rejects_non_rules():
    with pytest.raises(TypeError, match="rule"):
        impl_torch.optimizer_for({"lr": 0.1}, _param())


@pytest.mark.parametrize("rule", PEER_ALL)
def test_optimizer_for_torch_preset_equals_torch_optim(rule):
    init, grads = make_tensors(torch.float32, 4)
    po, pt = leaves(init), leaves(init)
    ours = impl_torch.optimizer_for(rule, po, impl="foreach")
    theirs = make_peer(rule, "torch", pt, foreach=True)
    step_in_lockstep(ours, theirs, po, pt, grads)


# --- CUDA (skipped on a machine without one) -----------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_equals_torch_optim_bitwise_cuda():
    # One test over every config and impl, so that a machine without CUDA skips once.
    # Bitwise on CUDA too: the same kernels with the same arguments as torch.optim.
    for param in CONFIGS:
        rule = param.values[0]
        for impl in ("loop", "foreach"):
            init, grads = make_tensors(torch.float32, 4)
            po = [t.cuda().requires_grad_() for t in init]
            pt = [t.cuda().requires_grad_() for t in init]
            ours = OURS[rule.name](po, **rule.as_dict(), impl=impl)
            theirs = make_peer(rule, "torch", pt, foreach=FOREACH[impl])
            step_in_lockstep(ours, theirs, po, pt, [[g.cuda() for g in gs] for gs in grads])
