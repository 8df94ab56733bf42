"""Numerical edge cases and bad input (issue #6).

Contract: every implementation (torch loop/foreach[/fused], jax make_step/transformation)
computes what the reference library of its convention computes, special values included:
NaN and Inf in gradients propagate into the parameters (never silently replaced), 0/0 is
NaN in the torch convention and 0 where optax masks it (Adagrad ``mask_zero_accumulator``),
overflow and underflow happen where torch.optim's happen. Bad input raises before anything
is modified.

Already covered elsewhere: grad None skipped with torch.optim (test_torch_optimizer.py
``test_grad_none_is_skipped``), bad grads/states in the functional API
(test_torch_functional.py ``test_bad_arguments_raise_before_any_update``,
``test_device_mismatch_raises``), invalid hyperparameters (test_rules.py,
test_jax_transforms.py ``test_invalid_hyperparameters_name_the_argument``).
"""

from __future__ import annotations

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import impl_jax  # noqa: E402
import impl_torch  # noqa: E402
from adaptbench import rules  # noqa: E402
from tests.implementations import IMPLEMENTATIONS  # noqa: E402
from tests.peer_lookup import jax_factory, ours_torch_class, rule_names, torch_class  # noqa: E402
from tests.reference_libraries import optax_trajectory  # noqa: E402
from tests.registry_cases import base, every_state, has_field  # noqa: E402

IMPLS = [i for i in IMPLEMENTATIONS if "strided" not in i.id]
IMPL_IDS = [i.id for i in IMPLS]


def _torch_kwargs(rule) -> dict:
    # ValueError when torch.optim has no setting for the rule
    return rule.peer_kwargs("torch")


def torch_optim(rule, params, grads, dtype=torch.float32):
    """torch.optim (foreach=False) from float64 NumPy inputs: final params and states as float64."""
    ps = [torch.tensor(np.asarray(p), dtype=dtype, requires_grad=True) for p in params]
    opt = torch_class(rule.name)(ps, **_torch_kwargs(rule), foreach=False)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(np.asarray(g), dtype=dtype)
        opt.step()
    out = [p.detach().double().numpy() for p in ps]
    states = [{n: opt.state[p][n].double().numpy() for n in rule.state_names} for p in ps]
    return out, states


def ours(impl, rule, params, grads, dtype="float32"):
    run = impl.start(rule, [np.asarray(p, dtype=np.float64) for p in params], dtype)
    for gs in grads:
        run.step([np.asarray(g, dtype=np.float64) for g in gs])
    return run.values()


def assert_same_values(actual, expected, dtype="float32"):
    """Same NaN/Inf pattern exactly; finite values within the single-step tolerance."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == e.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isinf(a) * np.sign(a), np.isinf(e) * np.sign(e), err_msg="Inf differ")
    tol = rules.tolerance(dtype)
    # a value that cancels (Adam's first moment changing sign) is held to the leaf's scale
    finite = np.abs(e[np.isfinite(e)])
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(a, e, rtol=tol.rtol, atol=max(tol.rtol * scale, 1e-30))


def check_against_torch_optim(impl, rule, params, grads, dtype="float32"):
    want_p, want_s = torch_optim(rule, params, grads, getattr(torch, dtype))
    got_p, got_s = ours(impl, rule, params, grads, dtype)
    for i, (a, e) in enumerate(zip(got_p, want_p)):
        assert_same_values(a, e, dtype)
        for n in rule.state_names:
            assert_same_values(got_s[i][n], want_s[i][n], dtype)
    return got_p, got_s


# --- zero gradients and 0/0 -------------------------------------------------------------------


# the rules whose step divides by a root plus eps (SGD has neither)
EPS_RULES = [n for n in rule_names("torch") if has_field(rules.RULES[n], "eps")]
# the rules with an adaptive denominator: a second moment that squares the gradient
ADAPTIVE_RULES = [n for n in rule_names("torch") if rules.RULES[n].SECOND_MOMENTS]


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", EPS_RULES)
def test_zero_grad_with_eps_zero_is_nan_in_torch_convention(name, impl):
    """eps = 0 and a zero accumulator: 0 / (sqrt(0) + 0) = NaN, as torch.optim computes it."""
    rule = rules.preset(name, "torch", eps=0.0)
    p, _ = check_against_torch_optim(impl, rule, [np.ones(3)], [[np.zeros(3)]])
    assert np.isnan(p[0]).all()


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_zero_grad_with_default_eps_leaves_params_unchanged(name, impl):
    rule = rules.preset(name, "torch", weight_decay=0.0)  # AdamW's default decay moves p
    p, _ = check_against_torch_optim(impl, rule, [np.ones(3)], [[np.zeros(3)]] * 2)
    np.testing.assert_array_equal(p[0], np.ones(3))


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
def test_zero_grad_optax_convention_masks_to_zero(impl):
    """Adagrad, optax convention (mask_zero_accumulator), eps = 0 and s0 = 0: update 0, like optax.adagrad."""
    rule = rules.preset("adagrad", "optax", eps=0.0, initial_accumulator_value=0.0)
    params, grads = [np.array([1.0, 2.0, 3.0])], [[np.array([0.0, 0.5, 0.0])]] * 2
    want = optax_trajectory(optax.adagrad(0.01, initial_accumulator_value=0.0, eps=0.0), params, grads, "float32")[-1]
    got, _ = ours(impl, rule, params, grads)
    assert_same_values(got[0], want[0])
    assert got[0][0] == 1.0 and got[0][2] == 3.0


# --- NaN and Inf propagate ----------------------------------------------------------------------

SPECIAL = [np.array([np.nan, 1.0, np.inf, -np.inf, 0.5])]
REGULAR = [np.array([0.1, -0.2, 0.3, -0.4, 0.5])]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_nan_and_inf_grads_propagate(name, impl, dtype):
    """A NaN/Inf gradient poisons its own element (params and state) and nothing else, as in torch.optim.
    Every state the rule can keep is on (SGD's default keeps none)."""
    rule = rules.preset(name, "torch", **every_state(rules.RULES[name]))
    p, s = check_against_torch_optim(impl, rule, [np.ones(5)], [SPECIAL, REGULAR], dtype)
    assert np.isnan(p[0][:1]).all() and np.isfinite(p[0][1]) and np.isfinite(p[0][4])
    # inf / (sqrt(inf) + eps) = NaN, SGD's p - lr*inf = -inf: never replaced
    assert not np.isfinite(p[0][2:4]).any()
    assert np.isnan(s[0][rule.state_names[0]][0])


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
def test_nan_in_params_with_weight_decay_propagates(impl):
    rule = rules.preset("rmsprop", "torch", weight_decay=0.1, momentum=0.9)
    p, _ = check_against_torch_optim(impl, rule, [np.array([np.nan, 1.0])], [[np.array([0.1, 0.2])]])
    assert np.isnan(p[0][0]) and np.isfinite(p[0][1])


# --- magnitudes -------------------------------------------------------------------------------------


def _accumulator(rule) -> str:
    """The rule's first state that sums squares (Adagrad's sum, RMSprop's square_avg, ...)."""
    return next(n for n in rule.state_names if n in rule.SECOND_MOMENTS)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", ADAPTIVE_RULES)
def test_huge_grads_overflow_and_freeze_like_torch_optim(name, impl, dtype):
    """fp32 and bf16 (same exponent range), |g| = 1e30: g*g overflows to inf (as in torch.optim), so the accumulator is inf and
    the step g / (sqrt(inf) + eps) is 0: the parameter silently stops moving, forever (Adagrad)
    or until the average decays (RMSprop/Adadelta). Ours equals torch.optim's result."""
    rule = rules.preset(name, "torch", weight_decay=0.0)  # AdamW's default decay would move p
    p, s = check_against_torch_optim(impl, rule, [np.array([1.0, 2.0])], [[np.array([1e30, -3e30])]] * 2, dtype)
    np.testing.assert_array_equal(p[0], [1.0, 2.0])
    assert np.isposinf(s[0][_accumulator(rule)]).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", ADAPTIVE_RULES)
def test_tiny_grads_underflow_like_torch_optim(name, impl, dtype):
    """fp32 and bf16, |g| = 1e-30: g*g underflows to 0; the step is ~g/eps, far below an ulp of p = 1."""
    rule = rules.preset(name, "torch", weight_decay=0.0)
    p, s = check_against_torch_optim(impl, rule, [np.array([1.0, 2.0])], [[np.array([1e-30, -3e-30])]] * 2, dtype)
    np.testing.assert_array_equal(p[0], [1.0, 2.0])
    np.testing.assert_array_equal(s[0][_accumulator(rule)], [0.0, 0.0])


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_tiny_params_with_moderate_grads(name, impl):
    """Subnormal-sized params move by a normal-sized step: no flush to zero anywhere."""
    rule = rules.preset(name, "torch")
    check_against_torch_optim(impl, rule, [np.array([1e-40, -1e-42, 0.0])], [[np.array([1.0, -1.0, 1e-3])]] * 2)


@pytest.mark.parametrize("name", rule_names("torch"))
@pytest.mark.parametrize("via", ["torch", "jax"])
@pytest.mark.parametrize("grad", [1e-4, 0.0, 300.0, 1e20])
def test_float16_edge_values_like_torch_optim(name, via, grad):
    """fp16: ours (torch optimizer and jax make_step) reproduce torch.optim's fp16 specials.

    64 elements, a whole number of CPU vectors (16 fp16 lanes with AVX2, 32 with AVX-512):
    torch's fp16 ``add(u, alpha=a)`` rounds ``a`` to fp16 in its vectorised loop but keeps
    it in float32 for the scalar tail (torch 2.13, CPU: ``1 + (-1e-3)*300`` is 0.69971 for
    64 elements, 0.70020 for 3), and ours follows the vectorised loop (``impl_jax._core.
    Precision.stored``). SGD's ``p.add_(g, alpha=-lr)`` with lr = 1e-3 shows it."""
    dt, n = torch.float16, 64
    ref = torch.ones(n, dtype=dt, requires_grad=True)
    opt = torch_class(name)([ref], foreach=False)
    ref.grad = torch.full((n,), grad).to(dt)  # 1e20 -> inf in fp16
    opt.step()
    want = ref.detach().double().numpy()
    if via == "torch":
        p = torch.ones(n, dtype=dt, requires_grad=True)
        o = ours_torch_class(name)([p])
        p.grad = torch.full((n,), grad).to(dt)
        o.step()
        got = p.detach().double().numpy()
    else:
        rule = rules.preset(name, "torch")
        params = jnp.ones(n, jnp.float16)
        params, _ = impl_jax.make_step(rule)(params, impl_jax.init(rule, params), jnp.full(n, grad, jnp.float32).astype(jnp.float16))
        got = np.asarray(params, np.float64)
    np.testing.assert_array_equal(got, want)


# --- shapes and layouts --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_empty_and_scalar_params(name, impl):
    rule = rules.preset(name, "torch", **({"momentum": 0.9, "centered": True} if name == "rmsprop" else {}))
    rng = np.random.default_rng(0)
    params = [np.zeros((0,)), np.float64(0.7), np.zeros((2, 0, 3)), rng.normal(size=(2,))]
    grads = [[np.zeros((0,)), np.float64(rng.normal()), np.zeros((2, 0, 3)), rng.normal(size=(2,))] for _ in range(3)]
    got, states = check_against_torch_optim(impl, rule, params, grads)
    assert got[0].shape == (0,) and got[1].shape == () and got[2].shape == (2, 0, 3)
    assert all(s["step"] == 3 for s in states)


def _same(impl):
    """Bitwise for loop/foreach (torch.optim's own code paths); fused within fp32 tolerance."""
    if impl != "fused":
        return torch.equal
    return lambda a, b: torch.allclose(a, b, rtol=1.3e-6, atol=1e-7)


@pytest.mark.parametrize("impl", impl_torch.IMPLS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_channels_last_params_like_torch_optim(name, impl):
    """4-d channels_last params: bitwise torch.optim, and params and state keep the layout."""
    torch.manual_seed(0)
    init = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    p, q = init.clone().requires_grad_(), init.clone().requires_grad_()
    assert p.is_contiguous(memory_format=torch.channels_last)
    kw = {"momentum": 0.9, "centered": True} if name == "rmsprop" else {}
    o, t = ours_torch_class(name)([p], **kw, impl=impl), torch_class(name)([q], **kw, foreach=False)
    for _ in range(3):
        g = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
        p.grad, q.grad = g.clone(), g.clone()
        o.step()
        t.step()
    same = _same(impl)
    assert same(p, q) and p.is_contiguous(memory_format=torch.channels_last)
    for k, v in t.state[q].items():
        assert same(o.state[p][k], v), k
        if impl != "fused":  # (fused's state layout is its own business)
            assert o.state[p][k].stride() == v.stride(), k


# --- frozen, unfrozen and skipped parameters ---------------------------------------------------------


@pytest.mark.parametrize("impl", impl_torch.IMPLS)
@pytest.mark.parametrize("name", rule_names("torch"))
def test_requires_grad_false_is_skipped_and_unfreezing_starts_state(name, impl):
    """A frozen param (requires_grad False, grad None) is skipped: no state (Adagrad: the state
    torch.optim.Adagrad creates eagerly in __init__, step 0); unfrozen, its state (step
    count, SGD's momentum buffer) starts at its first real step, exactly as in torch.optim.
    Every state the rule can keep is on."""
    torch.manual_seed(0)
    kwargs = base(rules.RULES[name]).replace(**every_state(rules.RULES[name])).peer_kwargs("torch")
    counts = rules.RULES[name].STEP_IN_STATE
    a, b = torch.randn(3, requires_grad=True), torch.randn(4)
    ta, tb = a.detach().clone().requires_grad_(), b.clone()
    o = ours_torch_class(name)([a, b], **kwargs, impl=impl)
    t = torch_class(name)([ta, tb], **kwargs, foreach=False)
    b_before = b.clone()
    for step in range(5):
        if step == 2:
            b.requires_grad_()
            tb.requires_grad_()
        g = torch.randn(3)
        a.grad, ta.grad = g.clone(), g.clone()
        if step >= 2:
            gb = torch.randn(4)
            b.grad, tb.grad = gb.clone(), gb.clone()
        o.step()
        t.step()
        if step < 2:
            assert torch.equal(b, b_before) and set(o.state[b]) == set(t.state[tb])
            assert name != "adagrad" or o.state[b]["step"].item() == 0
    same = _same(impl)
    assert same(a, ta) and same(b, tb)
    assert set(o.state[b]) == set(t.state[tb]) and set(t.state[tb])
    assert not counts or (o.state[b]["step"].item() == 3 and o.state[a]["step"].item() == 5)
    for k in t.state[tb]:
        assert same(o.state[b][k], t.state[tb][k])


# --- bad input leaves params and state untouched ---------------------------------------------------


def test_torch_refuses_mismatched_grad_assignment():
    """A grad of the wrong shape or dtype cannot even be assigned to ``.grad`` (torch's setter
    raises), so the optimizers never see one; the functional API's checks are tested in
    test_torch_functional.py ``test_bad_arguments_raise_before_any_update``."""
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="size"):
        p.grad = torch.zeros(5)
    with pytest.raises(RuntimeError, match="type"):
        p.grad = torch.zeros(3, dtype=torch.float64)


def _fullest(name: str) -> rules.Rule:
    """The rule's torch preset keeping every state it can (SGD's default keeps none)."""
    cls = rules.RULES[name]
    return base(cls).replace(**every_state(cls))


def _step_key(name: str) -> set:
    return {"step"} if rules.RULES[name].STEP_IN_STATE else set()


def _foreign_state_pairs() -> list[tuple[str, str]]:
    """Every ordered pair of registered rules whose fullest state (``step`` where kept and
    ``state_names``, :func:`_fullest`) the other cannot hold: it lacks a state the target
    keeps, or has one the target never keeps (``STATE``)."""
    def keys(name):
        return _step_key(name) | set(_fullest(name).state_names)

    return [(a, b) for a in rules.RULES for b in rules.RULES
            if a != b and not (keys(b) <= keys(a) <= _step_key(b) | set(rules.RULES[b].STATE))]


@pytest.mark.parametrize("source,target", _foreign_state_pairs())
def test_state_dict_of_another_rule_is_refused_at_load(source, target):
    """Loading another rule's state dict: torch.optim accepts it (it checks only group
    sizes) and its next step fails with a bare ``KeyError: 'sum'``
    (test_finding_torch_optim_loads_another_rules_state_dict). Ours refuses it in
    ``load_state_dict`` with a ValueError naming the keys; optimizer and parameter unchanged."""
    torch.manual_seed(0)
    p, q = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    src = impl_torch.optimizer_for(_fullest(source), [q])
    q.grad = torch.randn(3)
    src.step()
    dst = impl_torch.optimizer_for(_fullest(target), [p])
    p.grad = torch.randn(3)
    dst.step()
    before_p, before_state = p.detach().clone(), dst.state_dict()
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[0\] has keys"):
        dst.load_state_dict(src.state_dict())
    assert torch.equal(p, before_p)
    after = dst.state_dict()
    assert after["param_groups"] == before_state["param_groups"]
    for k, v in before_state["state"][0].items():
        assert torch.equal(after["state"][0][k], v)


@pytest.mark.parametrize("name", [n for n in rule_names() if "momentum" not in rules.RULES[n].__dataclass_fields__])
def test_momentum_for_a_rule_without_momentum_names_it(name):
    """The dataclass's "unexpected keyword argument 'momentum'" names it: no nicer message needed."""
    with pytest.raises(TypeError, match="momentum"):
        rules.preset(name, "torch", momentum=0.9)
    with pytest.raises(TypeError, match="momentum"):
        ours_torch_class(name)([torch.zeros(2, requires_grad=True)], momentum=0.9)
    with pytest.raises(TypeError, match="momentum"):
        jax_factory(name)(momentum=0.9)


def test_unknown_rule_impl_and_convention():
    with pytest.raises(ValueError, match="convention"):
        rules.preset("adagrad", "keras")
    with pytest.raises(ValueError, match="rule"):
        rules.preset("no-such-rule")
    with pytest.raises(ValueError, match="impl"):
        impl_torch.Adagrad([torch.zeros(2, requires_grad=True)], impl="cuda-magic")
    p = torch.zeros(2)
    with pytest.raises(ValueError, match="impl"):
        impl_torch.step(rules.preset("adagrad"), [p], [p.clone()], [impl_torch.init_state(rules.preset("adagrad"), p)], impl="nope")


# --- JAX: trees that do not match the state ---------------------------------------------------------


def _jax_setup(name):
    rule = rules.preset(name, "torch")
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    return rule, params, impl_jax.init(rule, params)


@pytest.mark.parametrize("name", rule_names())
@pytest.mark.parametrize(
    "grads",
    [
        pytest.param({"w": jnp.ones((2, 3))}, id="missing-leaf"),
        pytest.param({"w": jnp.ones((2, 3)), "b": jnp.zeros(3), "c": jnp.zeros(1)}, id="extra-leaf"),
        pytest.param([jnp.ones((2, 3)), jnp.zeros(3)], id="list-not-dict"),
        pytest.param({"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}, id="leaf-shape"),
    ],
)
def test_jax_mismatched_tree_is_a_clear_error(name, grads):
    rule, params, state = _jax_setup(name)
    tx = impl_jax.transformation(rule)
    with pytest.raises((ValueError, TypeError), match="(?i)struct|shape|tree|match"):
        tx.update(grads, state, params)
    step = impl_jax.make_step(rule)
    with pytest.raises((ValueError, TypeError), match="(?i)struct|shape|tree|match"):
        step(params, state, grads)
    # no donation happened: the inputs are still usable
    assert float(params["w"][0, 0]) == 1.0 and int(state.step) == 0


@pytest.mark.parametrize("name", rule_names())
def test_jax_state_of_another_rule_is_a_type_error(name):
    rule, params, _ = _jax_setup(name)
    other = impl_jax.init(rules.preset("adagrad" if name != "adagrad" else "rmsprop"), params)
    with pytest.raises(TypeError, match="State"):
        impl_jax.transformation(rule).update(params, other, params)


# --- findings about the reference libraries --------------------------------------------------------


# the rules whose torch.optim default eps sits outside the root and rounds to 0 in float16
@pytest.mark.parametrize(
    "name", [n for n in rule_names("torch") if hasattr(rules.RULES[n](), "eps")
             and not getattr(rules.RULES[n](), "eps_in_sqrt", False) and np.float16(rules.RULES[n]().eps) == 0]
)
def test_finding_torch_optim_fp16_turns_zero_grad_into_nan(name):
    """torch.optim.Adagrad/RMSprop in float16 turn a *zero* gradient into NaN with their
    default eps: the CPU ``add`` kernel rounds eps (1e-10, 1e-8) to fp16 first, where it is 0,
    so the step is 0 / (sqrt(0) + 0). A gradient of 1e-4 gives -inf (g*g underflows to 0).
    bfloat16 (fp32's exponent range) has neither problem. We reproduce it (tests above)."""
    p = torch.ones(2, dtype=torch.float16, requires_grad=True)
    opt = torch_class(name)([p], foreach=False)
    p.grad = torch.tensor([0.0, 1e-4], dtype=torch.float16)
    opt.step()
    assert torch.isnan(p[0]) and p[1] == -float("inf")
    q = torch.ones(2, dtype=torch.bfloat16, requires_grad=True)
    opt = torch_class(name)([q], foreach=False)
    q.grad = torch.tensor([0.0, 1e-4], dtype=torch.bfloat16)
    opt.step()
    assert torch.isfinite(q).all()


def test_finding_torch_optim_huge_grad_freezes_adagrad_forever():
    """torch.optim.Adagrad, fp32: one gradient of 1e20 makes ``sum`` inf (g*g overflows), and
    every later step divides by inf: the parameter never moves again, without any warning."""
    p = torch.ones(1, requires_grad=True)
    opt = torch.optim.Adagrad([p], lr=0.1)
    p.grad = torch.tensor([1e20])
    opt.step()
    for _ in range(3):
        p.grad = torch.tensor([1.0])
        opt.step()
    assert torch.isinf(opt.state[p]["sum"]).all() and p.item() == 1.0


def test_finding_torch_optim_loads_another_rules_state_dict():
    """torch.optim.Adagrad.load_state_dict accepts RMSprop's state dict without complaint (it
    checks only the number of groups and params); the mistake surfaces at the next step as a
    bare ``KeyError: 'sum'``."""
    q, p = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    rms = torch.optim.RMSprop([q])
    q.grad = torch.randn(3)
    rms.step()
    ada = torch.optim.Adagrad([p])
    ada.load_state_dict(rms.state_dict())
    p.grad = torch.randn(3)
    with pytest.raises(KeyError, match="sum"):
        ada.step()
