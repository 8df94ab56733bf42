"""Bad input and state from real reports (issue 13), impl_torch's optimizer classes.

Each test is one class of fault, kept with the case that showed it. What is right is
judged against torch.optim where torch.optim is right, against the float64 oracle
(``rules.reference``) where it is not, and is a clear error where nothing can be right.
docs/errors-and-edge-cases.md says what happens in each case and why.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

import impl_torch
from adaptbench import rules
from adaptbench.rules import reference

from tests.peer_lookup import dense_only_rules, ours_torch_class, rule_names, torch_class, torch_takes
from tests.registry_cases import base, every_state

FOREACH = {"loop": False, "foreach": True}


def _linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def _backward(model: torch.nn.Module, dtype=torch.float32, seed: int = 1) -> None:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model(x.to(dtype)).square().sum().backward()


def _snapshot(opt) -> dict:
    return {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}


# --- 2. loaded state is validated and normalised ------------------------------------------------


def _fullest(name: str) -> dict:
    """The keywords of our optimizer class for the rule's torch preset keeping every state
    it can (``registry_cases.every_state``: SGD's default keeps none)."""
    cls = rules.RULES[name]
    return base(cls).replace(**every_state(cls)).torch_keywords()


def _first_checked_state(name: str) -> str:
    """The state tensor a load checks first (in sorted order) under :func:`_fullest`."""
    cls = rules.RULES[name]
    return sorted(base(cls).replace(**every_state(cls)).state_names)[0]


# the rules whose state counts steps (torch.optim.SGD keeps no counter)
COUNTING = [n for n in rule_names("torch") if rules.RULES[n].STEP_IN_STATE]


LOW_COUNTERS = [
    # (dtype a checkpoint tool cast the counter to, a count it still holds exactly, past
    # which + 1 rounds back: bf16 has 8 significant bits, fp16 11)
    pytest.param(torch.bfloat16, 300, id="bf16-300"),
    pytest.param(torch.float16, 2048, id="fp16-2048"),
]


def _trained(cls, steps: int, seed: int = 0, **kw):
    model = _linear(seed)
    opt = cls(model.parameters(), **kw)
    for s in range(steps):
        _backward(model, seed=s)
        opt.step()
        opt.zero_grad()
    return model, opt


def _with_step(state_dict: dict, value) -> dict:
    state_dict = copy.deepcopy(state_dict)
    for s in state_dict["state"].values():
        s["step"] = value() if callable(value) else value
    return state_dict


@pytest.mark.parametrize("dtype,count", LOW_COUNTERS)
@pytest.mark.parametrize("name", COUNTING)
def test_low_precision_step_counter_is_normalised_at_load(name, dtype, count):
    # The case: a checkpoint whose "step" was cast to bf16/fp16 with the rest.
    # Loaded, ours counts on in float32 and follows torch.optim loaded with a float32
    # counter (torch.optim loaded with the low-precision one freezes it: the finding below).
    kw = {"lr_decay": 0.01} if name == "adagrad" else {}
    _, source = _trained(ours_torch_class(name), 2, **kw)
    saved = source.state_dict()
    ours_model, theirs_model = _linear(1), _linear(1)
    ours, theirs = ours_torch_class(name)(ours_model.parameters(), **kw), torch_class(name)(theirs_model.parameters(), **kw)
    ours.load_state_dict(_with_step(saved, lambda: torch.tensor(count, dtype=dtype)))
    theirs.load_state_dict(_with_step(saved, lambda: torch.tensor(float(count))))
    for model, opt in ((ours_model, ours), (theirs_model, theirs)):
        for s in range(20):
            _backward(model, seed=s)
            opt.step()
            opt.zero_grad()
    for po, pt in zip(ours_model.parameters(), theirs_model.parameters()):
        step = ours.state[po]["step"]
        assert step.dtype == torch.float32 and step.device.type == "cpu" and step.item() == count + 20
        assert torch.equal(po, pt)
        for key, value in theirs.state[pt].items():
            assert torch.equal(ours.state[po][key], value), key


@pytest.mark.parametrize("dtype,count", LOW_COUNTERS)
def test_finding_torch_optim_low_precision_step_counter_stops(dtype, count):
    """torch.optim keeps a loaded ``step`` as it comes (``_process_value_according_to_param_policy``
    casts every state tensor but ``step``), so a bf16/fp16 counter stops counting, and with
    ``lr_decay`` the learning rate freezes."""
    _, source = _trained(torch.optim.Adagrad, 1, lr_decay=0.5)
    model = _linear()
    opt = torch.optim.Adagrad(model.parameters(), lr_decay=0.5)
    opt.load_state_dict(_with_step(source.state_dict(), lambda: torch.tensor(count, dtype=dtype)))
    for s in range(20):
        _backward(model, seed=s)
        opt.step()
    assert opt.state[model.weight]["step"].item() == count


@pytest.mark.parametrize("step", [torch.tensor(3), 3, torch.tensor([3.0], dtype=torch.float64)], ids=["int-tensor", "int", "fp64-1d"])
def test_step_counter_of_any_kind_becomes_a_cpu_float32_scalar(step):
    _, source = _trained(impl_torch.Adagrad, 1)
    model = _linear()
    opt = impl_torch.Adagrad(model.parameters())
    opt.load_state_dict(_with_step(source.state_dict(), lambda: step.clone() if torch.is_tensor(step) else step))
    for p in model.parameters():
        s = opt.state[p]["step"]
        assert s.dtype == torch.float32 and s.dim() == 0 and s.device.type == "cpu" and s.item() == 3


@pytest.mark.parametrize(
    "step,exc,match",
    [
        pytest.param(torch.tensor(2.5), ValueError, "whole number", id="fraction"),
        pytest.param(torch.tensor(-1.0), ValueError, "whole number", id="negative"),
        pytest.param(torch.tensor(float("nan")), ValueError, "whole number", id="nan"),
        pytest.param(torch.zeros(2), ValueError, "one-element", id="two-elements"),
        pytest.param(float(2**24 + 1), ValueError, "exactly", id="beyond-float32"),
        pytest.param("3", TypeError, "tensor or a number", id="str"),
    ],
)
def test_bad_step_counter_is_refused_at_load(step, exc, match):
    model, opt = _trained(impl_torch.Adagrad, 1)
    before = _snapshot(opt)
    with pytest.raises(exc, match=rf"state_dict\['state'\]\[0\]\['step'\].*{match}"):
        opt.load_state_dict(_with_step(opt.state_dict(), step))
    assert all(torch.equal(v, before[id(p)][k]) for p, s in opt.state.items() for k, v in s.items())


@pytest.mark.parametrize("name", rule_names())
def test_state_of_another_shape_is_refused_at_load(name):
    # A checkpoint of another model (Linear(3, 2) saved, Linear(2, 2) loading): torch.optim
    # loads it and fails at the next step inside a kernel; ours names the entry and state.
    _, source = _trained(ours_torch_class(name), 1, **_fullest(name))
    model = torch.nn.Linear(2, 2)
    opt = ours_torch_class(name)(model.parameters())
    before = _snapshot(opt)
    key = _first_checked_state(name)
    with pytest.raises(
        ValueError,
        match=rf"state_dict\['state'\]\[0\]\['{key}'\] has shape \(2, 3\), but its parameter "
        rf"\(param 0: param_groups\[0\]\['params'\]\[0\]\) has shape \(2, 2\)",
    ):
        opt.load_state_dict(source.state_dict())
    assert _snapshot(opt).keys() == before.keys()


@pytest.mark.parametrize("name", rule_names("torch"))
def test_loaded_state_takes_the_parameters_dtype_and_device(name):
    # A float64 checkpoint into a float32 model: cast as torch.optim's load casts it.
    _, source = _trained(ours_torch_class(name), 2)
    saved = copy.deepcopy(source.state_dict())
    for s in saved["state"].values():
        for k in s:
            if k != "step":
                s[k] = s[k].double()
    ours_model, theirs_model = _linear(1), _linear(1)
    ours, theirs = ours_torch_class(name)(ours_model.parameters()), torch_class(name)(theirs_model.parameters())
    ours.load_state_dict(copy.deepcopy(saved))
    theirs.load_state_dict(copy.deepcopy(saved))
    for po, pt in zip(ours_model.parameters(), theirs_model.parameters()):
        for key, value in theirs.state[pt].items():
            if key != "step":
                assert ours.state[po][key].dtype == value.dtype == torch.float32, key
                assert torch.equal(ours.state[po][key], value), key


@pytest.mark.parametrize("name", [n for n in rule_names("torch") if torch_takes(n, "capturable")])
def test_refused_flag_in_a_loaded_group_is_refused_at_load(name):
    # The case: a state dict saved by torch.optim with capturable=True. Before, it
    # loaded and the next step() told the user to "pass capturable=False", which they never
    # passed. Now load_state_dict refuses it, says it came from the state dict, and changes
    # nothing; a pre-hook that clears the flag makes it load.
    model = _linear()
    saved = torch_class(name)(model.parameters(), capturable=True).state_dict()
    opt = ours_torch_class(name)(model.parameters())
    with pytest.raises(ValueError, match=r"state_dict\['param_groups'\]\[0\].*capturable=True.*comes from the state dict"):
        opt.load_state_dict(saved)
    assert opt.param_groups[0]["capturable"] is False

    def clear_capturable(optimizer, state_dict):
        for group in state_dict["param_groups"]:
            group["capturable"] = False

    opt.register_load_state_dict_pre_hook(clear_capturable)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["capturable"] is False


# (rule, options it was saved with, the state it lacks, what the refusal says)
LACKING = [
    pytest.param("adagrad", {}, "sum", r"state_dict\['state'\]\[0\] has keys \['step'\], which is not Adagrad state",
                 id="adagrad"),
    pytest.param("rmsprop", {"centered": True}, "grad_avg", r"state_dict\['state'\]\[0\] lacks \['grad_avg'\]",
                 id="rmsprop"),
]


@pytest.mark.parametrize("name, options, dropped, match", LACKING)
def test_loaded_state_lacking_what_its_group_needs_is_refused(name, options, dropped, match):
    # State without a tensor its group's settings use: RMSprop saved centered, its
    # "grad_avg" dropped; Adagrad without "sum". torch.optim fails at the next step with a
    # bare KeyError; ours refuses at load, naming the entry.
    _, source = _trained(ours_torch_class(name), 1, **options)
    saved = copy.deepcopy(source.state_dict())
    for s in saved["state"].values():
        del s[dropped]
    opt = ours_torch_class(name)(_linear().parameters())
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved)


# --- 4. a step that raises changes nothing -----------------------------------------------------


@pytest.mark.parametrize("name", dense_only_rules())
def test_failed_step_creates_no_lazy_state(name):
    # The case: a dense Linear group, then a sparse Embedding group (sparse
    # gradients are refused by RMSprop and Adadelta). The step raises, and before the fix
    # opt.state had gained the Linear's two entries.
    lin, emb = _linear(), torch.nn.Embedding(5, 3, sparse=True)
    opt = ours_torch_class(name)([{"params": lin.parameters()}, {"params": emb.parameters()}])
    (lin(torch.ones(1, 3)).sum() + emb(torch.tensor([1])).sum()).backward()
    before = [p.detach().clone() for p in (*lin.parameters(), *emb.parameters())]
    with pytest.raises(TypeError, match=r"param_groups\[1\]\['params'\]\[0\]\.grad is a sparse gradient"):
        opt.step()
    assert len(opt.state) == 0
    for p, b in zip((*lin.parameters(), *emb.parameters()), before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("name", rule_names())
def test_failed_step_leaves_earlier_groups_state_untouched(name):
    # Group 0 has state (one step done) and its model was converted to float64 since (its
    # state is cast at the next step); group 1 is made invalid behind the optimizer's back
    # (a state tensor of the wrong shape). No step counter moves and nothing is cast.
    a, b = _linear(0), _linear(1)
    opt = ours_torch_class(name)([{"params": a.parameters()}, {"params": b.parameters()}], **_fullest(name))
    _backward(a)
    _backward(b)
    opt.step()
    a.double()
    _backward(a, torch.float64)
    key = _first_checked_state(name)
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
@pytest.mark.parametrize("name", rule_names("torch"))
def test_state_follows_a_parameter_converted_after_construction(name, impl):
    # model.double() after the optimizer (and its state) exist. torch.optim steps on with a
    # float32 state mixed into float64 math; ours casts the state to the parameter's dtype
    # at the next step, which is what torch.optim's own load_state_dict does. So the
    # reference is torch.optim after a state-dict round trip: bitwise equal.
    ours_model, theirs_model = _linear(), _linear()
    ours = ours_torch_class(name)(ours_model.parameters(), impl=impl)
    theirs = torch_class(name)(theirs_model.parameters(), foreach=FOREACH[impl])
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


@pytest.mark.parametrize("name", rule_names())
def test_converted_parameter_state_is_cast_in_place_of_the_old(name):
    # The state dict entry is updated (not replaced): a reference taken before keeps
    # working, and the step counter (a CPU scalar, never cast) keeps counting.
    model = _linear()
    opt = ours_torch_class(name)(model.parameters(), **_fullest(name))
    _backward(model)
    opt.step()
    state = opt.state[model.weight]
    model.double()
    _backward(model, torch.float64)
    opt.step()
    assert state is opt.state[model.weight] and set(state) - {"step"}
    if rules.RULES[name].STEP_IN_STATE:
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
@pytest.mark.parametrize("name", rule_names("torch"))
def test_state_follows_a_parameter_moved_to_another_device(name):
    # model.cuda() after the optimizer has state: torch.optim raises at its next step (its
    # kernels refuse CPU state with CUDA parameters); ours moves the state, and matches
    # torch.optim after a state-dict round trip (which moves it the same way).
    ours_model, theirs_model = _linear(), _linear()
    ours = ours_torch_class(name)(ours_model.parameters(), impl="foreach")
    theirs = torch_class(name)(theirs_model.parameters(), foreach=True)
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


# --- found on the way ------------------------------------------------------------------------------


def test_an_accepted_configuration_does_not_let_an_equal_bad_one_through():
    # True == 1 with one hash: the configuration cache once let centered=1 (refused) reuse
    # centered=True's accepted entry, so whether it was refused depended on what ran first.
    impl_torch.RMSprop(_linear().parameters(), centered=True)
    with pytest.raises(TypeError, match="centered"):
        impl_torch.RMSprop(_linear().parameters(), centered=1)


# --- 3. share_memory() shares every state tensor ----------------------------------------------------


def _hogwild(cls, **kw):
    """One step in a forked worker, then one in the parent, on shared params and state."""
    p = torch.zeros(1, requires_grad=True)
    p.detach().share_memory_()
    opt = cls([p], **kw)
    opt.share_memory()

    def one_step():
        p.grad = torch.ones(1)
        opt.step()

    worker = torch.multiprocessing.get_context("fork").Process(target=one_step)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    one_step()
    return p, opt


@pytest.mark.skipif(sys.platform != "linux", reason="forks a worker (fork start method)")
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")  # JAX's, if imported
@pytest.mark.parametrize("name", rule_names("torch"))
def test_share_memory_shares_every_state_tensor(name):
    # The case (Adagrad, lr_decay=0.5): with only "sum" shared the run ended with
    # step 1.0 and p = -0.170711; two steps give 2.0 and -0.147140 (the float64 oracle).
    # Adadelta and RMSprop must create their state before the fork to share it, and SGD
    # its momentum buffer (which torch.optim.SGD creates at the first step). Every state
    # the rule can keep is on.
    kw = {"lr": 0.1, "lr_decay": 0.5} if name == "adagrad" else {"lr": 0.1}
    kw = base(rules.RULES[name]).replace(**every_state(rules.RULES[name]), **kw).peer_kwargs("torch")
    p, opt = _hogwild(ours_torch_class(name), **kw)
    state = opt.state[p]
    assert set(state) == set(impl_torch.functional.state_keys(opt.group_rules()[0]))
    assert all(t.is_shared() for t in state.values())
    if rules.RULES[name].STEP_IN_STATE:
        assert state["step"].item() == 2.0

    q = torch.zeros(1, requires_grad=True)
    sequential = torch_class(name)([q], **kw)
    for _ in range(2):
        q.grad = torch.ones(1)
        sequential.step()
    assert torch.equal(p, q)
    for key, value in sequential.state[q].items():
        assert torch.equal(state[key], value), key

    rule = opt.group_rules()[0]
    expected, ref_state = np.zeros(1), reference.init_state(rule, np.zeros(1))
    for _ in range(2):
        expected, ref_state = reference.step(rule, expected, np.ones(1), ref_state)
    tol = rules.tolerance(torch.float32)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=tol.rtol, atol=tol.atol)


@pytest.mark.skipif(sys.platform != "linux", reason="forks a worker (fork start method)")
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_finding_torch_optim_adagrad_share_memory_keeps_step_private():
    """torch.optim.Adagrad.share_memory() shares only ``sum``: each process counts its own
    ``step``, so the forked worker's step is lost to the parent (step 1.0 after two steps)."""
    p, opt = _hogwild(torch.optim.Adagrad, lr=0.1, lr_decay=0.5)
    assert opt.state[p]["step"].item() == 1.0


# --- 5. centered RMSprop: v - m*m negative by rounding ----------------------------------------------


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_centered_rmsprop_goes_nan_exactly_where_torch_optim_does(impl):
    # The case: a constant gradient has zero variance, so v - m*m -> 0 and float32
    # rounding makes it slightly negative; sqrt gives NaN (docs/errors-and-edge-cases.md
    # has the step counts). We keep torch.optim's result, bit for bit, NaN included; the
    # float64 oracle stays finite with v - m*m >= 0 over the same steps.
    kw = {"lr": 1e-3, "alpha": 0.9, "centered": True}
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    ours = impl_torch.RMSprop([p], **kw, impl=impl)
    theirs = torch.optim.RMSprop([q], **kw, foreach=FOREACH[impl])
    rule = ours.group_rules()[0]
    expected, ref_state = np.zeros(1), reference.init_state(rule, np.zeros(1))
    first_nan = {}
    for t in range(1, 161):
        for param, opt, who in ((p, ours, "ours"), (q, theirs, "torch.optim")):
            param.grad = torch.tensor([3.0])
            opt.step()
            if who not in first_nan and torch.isnan(param).any():
                first_nan[who] = t
        torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True, msg=f"step {t}")
        for key, value in theirs.state[q].items():
            torch.testing.assert_close(ours.state[p][key], value, rtol=0, atol=0, equal_nan=True)
        expected, ref_state = reference.step(rule, expected, np.array([3.0]), ref_state)
        assert np.isfinite(expected).all() and (ref_state["square_avg"] >= ref_state["grad_avg"] ** 2).all()
    assert first_nan["ours"] == first_nan["torch.optim"]
