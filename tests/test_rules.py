"""The specification: validation, presets and the float64 oracle against hand-worked steps."""

import math

import numpy as np
import pytest

from adaptbench import rules
from adaptbench.rules import reference


@pytest.mark.parametrize("name", sorted(rules.RULES))
@pytest.mark.parametrize(
    "field,value",
    [("lr", -1e-3), ("eps", -1e-8), ("weight_decay", -0.1), ("lr", float("nan")), ("eps", float("inf"))],
    ids=lambda v: str(v),
)
def test_bad_common_hyperparameter_names_the_argument(name, field, value):
    with pytest.raises(ValueError, match=field):
        rules.rule_class(name)(**{field: value})


@pytest.mark.parametrize(
    "cls,field,value",
    [
        (rules.Adadelta, "rho", 1.5),
        (rules.Adadelta, "rho", -0.1),
        (rules.RMSprop, "alpha", 1.01),
        (rules.RMSprop, "momentum", -0.9),
        (rules.Adagrad, "lr_decay", -1.0),
        (rules.Adagrad, "initial_accumulator_value", -0.1),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_bad_rule_specific_hyperparameter(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize("value", ["0.1", None, True, [0.1]], ids=repr)
def test_non_numeric_hyperparameter_is_a_type_error(value):
    with pytest.raises(TypeError, match="lr"):
        rules.RMSprop(lr=value)


def test_switches_must_be_bools():
    with pytest.raises(TypeError, match="centered"):
        rules.RMSprop(centered=1)
    with pytest.raises(TypeError, match="eps_in_sqrt"):
        rules.Adagrad(eps_in_sqrt="yes")


def test_hyperparameter_of_another_rule_is_refused():
    with pytest.raises(TypeError, match="momentum"):
        rules.Adagrad(momentum=0.9)


def test_rules_are_frozen_and_hashable():
    r = rules.RMSprop(lr=1)
    assert r == rules.RMSprop(lr=1.0) and hash(r) == hash(rules.RMSprop(lr=1.0))
    assert isinstance(r.lr, float)
    with pytest.raises(AttributeError):
        r.lr = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError, match="alpha"):
        r.replace(alpha=2.0)


def test_defaults_are_torch_optims():
    torch = pytest.importorskip("torch")
    import inspect

    for ours, theirs in [
        (rules.Adagrad(), torch.optim.Adagrad),
        (rules.Adadelta(), torch.optim.Adadelta),
        (rules.RMSprop(), torch.optim.RMSprop),
    ]:
        sig = inspect.signature(theirs.__init__).parameters
        for field, value in ours.as_dict().items():
            if field in sig:
                assert float(sig[field].default) == value, field


@pytest.mark.parametrize("convention", rules.CONVENTIONS)
@pytest.mark.parametrize("name", sorted(rules.RULES))
def test_every_preset_exists_and_validates(name, convention):
    rule = rules.preset(name, convention)
    assert rule.name == name


def test_preset_table_matches_design():
    assert rules.preset("adagrad", "seed") == rules.Adagrad(lr=0.02, eps=1e-6, eps_in_sqrt=True)
    optax_adagrad = rules.preset("adagrad", "optax")
    assert (optax_adagrad.eps, optax_adagrad.initial_accumulator_value) == (1e-7, 0.1)
    assert optax_adagrad.eps_in_sqrt and optax_adagrad.mask_zero_accumulator
    assert rules.preset("rmsprop", "seed") == rules.RMSprop(lr=0.02, alpha=0.9, eps=1e-6, eps_in_sqrt=True)
    assert rules.preset("rmsprop", "optax") == rules.RMSprop(
        alpha=0.9, eps=1e-8, eps_in_sqrt=True, complex_as_real=False
    )
    assert rules.preset("adadelta", "torch") == rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True)
    assert rules.preset("rmsprop", "torch", lr=0.5).lr == 0.5


def test_preset_errors():
    with pytest.raises(ValueError, match="convention"):
        rules.preset("adagrad", "keras")
    with pytest.raises(ValueError, match="rule"):
        rules.preset("adam", "torch")


def test_state_names_and_traffic():
    assert rules.Adagrad().state_names == ("sum",)
    assert rules.Adagrad().accesses_per_element * 4 == 20
    assert rules.Adadelta().accesses_per_element * 4 == 28
    assert rules.RMSprop().accesses_per_element * 4 == 20
    assert rules.RMSprop(centered=True, momentum=0.9).state_names == ("square_avg", "grad_avg", "momentum_buffer")
    assert rules.RMSprop(centered=True, momentum=0.9).accesses_per_element * 4 == 36


# The oracle against steps worked by hand (scalar parameter p = 1, gradient g = 0.5).


def test_oracle_adagrad_by_hand():
    rule = rules.Adagrad(lr=0.1, eps=1e-10, lr_decay=0.5)
    p, s = reference.run(rule, 1.0, [0.5, 0.5])
    # step 1: s = 0.25, p = 1 - 0.1 * 0.5 / (0.5 + 1e-10); step 2: clr = 0.1 / 1.5, s = 0.5
    p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-10)
    p2 = p1 - (0.1 / 1.5) * 0.5 / (math.sqrt(0.5) + 1e-10)
    assert p == pytest.approx(p2, rel=1e-15) and s["sum"] == 0.5 and s["step"] == 2


def test_oracle_adagrad_masks_zero_accumulator():
    masked = rules.Adagrad(eps=0.0, eps_in_sqrt=True, mask_zero_accumulator=True)
    p, _ = reference.run(masked, np.array([1.0, 1.0]), [np.array([0.0, 0.5])])
    assert p[0] == 1.0 and p[1] < 1.0
    p, _ = reference.run(masked.replace(mask_zero_accumulator=False), np.array([1.0]), [np.array([0.0])])
    assert np.isnan(p[0])  # torch.optim's 0/0


def test_oracle_adadelta_by_hand():
    rule = rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6)
    p, s = reference.run(rule, 1.0, [0.5])
    v = 0.1 * 0.25
    d = math.sqrt(1e-6) / math.sqrt(v + 1e-6) * 0.5
    assert p == pytest.approx(1 - d, rel=1e-15)
    assert s["acc_delta"] == pytest.approx(0.1 * d * d, rel=1e-15)


def test_oracle_rmsprop_centered_momentum_by_hand():
    rule = rules.RMSprop(lr=0.01, alpha=0.9, eps=1e-8, centered=True, momentum=0.5)
    p, s = reference.run(rule, 1.0, [0.5, 0.5])
    v1, m1 = 0.1 * 0.25, 0.1 * 0.5
    b1 = 0.5 / (math.sqrt(v1 - m1 * m1) + 1e-8)
    v2, m2 = 0.9 * v1 + 0.1 * 0.25, 0.9 * m1 + 0.1 * 0.5
    b2 = 0.5 * b1 + 0.5 / (math.sqrt(v2 - m2 * m2) + 1e-8)
    assert p == pytest.approx(1 - 0.01 * b1 - 0.01 * b2, rel=1e-14)
    assert s["momentum_buffer"] == pytest.approx(b2, rel=1e-14)


def test_oracle_weight_decay_and_maximize():
    base = rules.RMSprop(lr=0.1, weight_decay=0.1)
    up, _ = reference.run(base.replace(maximize=True), 1.0, [0.5])
    down, _ = reference.run(base, 1.0, [-0.5])
    # maximize negates g before weight decay, as torch.optim does
    g = -0.5 + 0.1
    expected = 1 - 0.1 * g / (math.sqrt(0.01 * g * g) + 1e-8)
    assert up == pytest.approx(expected, rel=1e-14)
    assert down == pytest.approx(expected, rel=1e-14)


def test_oracle_does_not_modify_its_inputs():
    p = np.ones(3)
    state = reference.init_state(rules.Adagrad(), p)
    before = state["sum"].copy()
    reference.step(rules.Adagrad(), p, np.ones(3), state)
    assert np.array_equal(p, np.ones(3)) and np.array_equal(state["sum"], before)


def test_oracle_refuses_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        reference.step(rules.Adagrad(), np.ones(3), np.ones(4), reference.init_state(rules.Adagrad(), np.ones(3)))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_ulp_distance(dtype):
    one_ulp_above_one = {"float32": 1 + 2.0**-23, "float16": 1 + 2.0**-10, "bfloat16": 1 + 2.0**-7}[dtype]
    assert reference.ulp_distance(1.0, 1.0, dtype) == 0
    assert reference.ulp_distance(one_ulp_above_one, 1.0, dtype) == 1
    assert reference.ulp_distance(np.nan, np.nan, dtype) == 0
    assert reference.ulp_distance(np.nan, 1.0, dtype) == np.inf
    assert reference.ulp_distance(-np.inf, np.inf, dtype) == np.inf


def test_tolerances_are_stated_once():
    assert rules.tolerance("float32") == rules.Tolerance(rtol=1.3e-6, atol=1e-5)
    assert rules.tolerance(np.float64).rtol == 1e-7
    assert rules.tolerance("bfloat16").rtol == 2.0**-5
    with pytest.raises(ValueError, match="dtype"):
        rules.tolerance("int8")
