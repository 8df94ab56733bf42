"""The specification of every registered rule: validation, presets, state layout and the
oracle's shared prologue. Each rule's own hand-worked steps and preset values are in
``tests/test_rule_<name>.py``."""

import dataclasses

import numpy as np
import pytest

from adaptbench import rules
from adaptbench.rules import reference
from tests.peer_lookup import rule_names, torch_class
from tests.registry_cases import bad_values, base, everything, option_cases, switches


BAD_VALUES = [
    pytest.param(cls, field, value, id=f"{name}-{field}={value}")
    for name, cls in rules.RULES.items()
    for field, value in bad_values(cls)
]


@pytest.mark.parametrize("cls,field,value", BAD_VALUES)
def test_bad_hyperparameter_names_the_argument(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize("value", ["0.1", None, True, [0.1]], ids=repr)
@pytest.mark.parametrize("name", list(rules.RULES))
def test_non_numeric_hyperparameter_is_a_type_error(name, value):
    with pytest.raises(TypeError, match="lr"):
        rules.rule_class(name)(lr=value)


SWITCHES = [pytest.param(cls, field, id=f"{name}-{field}")
            for name, cls in rules.RULES.items() for field in switches(cls) + ["complex_as_real"]]


@pytest.mark.parametrize("cls,field", SWITCHES)
@pytest.mark.parametrize("value", [1, "yes"], ids=repr)
def test_switches_must_be_bools(cls, field, value):
    with pytest.raises(TypeError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize("name", list(rules.RULES))
def test_hyperparameter_of_another_rule_is_refused(name):
    cls = rules.rule_class(name)
    own = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted({f.name for other in rules.RULES.values() for f in dataclasses.fields(other)} - own)
    for field in foreign or ["not_a_field"]:
        with pytest.raises(TypeError, match=field):
            cls(**{field: 0.9})


@pytest.mark.parametrize("name", list(rules.RULES))
def test_rules_are_frozen_and_hashable(name):
    cls = rules.rule_class(name)
    r = cls(lr=1)
    assert r == cls(lr=1.0) and hash(r) == hash(cls(lr=1.0))
    assert isinstance(r.lr, float)
    with pytest.raises(AttributeError):
        r.lr = 0.5  # type: ignore[misc]
    field, value = bad_values(cls)[-1]
    with pytest.raises(ValueError, match=field):
        r.replace(**{field: value})


@pytest.mark.parametrize("name", rule_names("torch"))
def test_defaults_are_torch_optims(name):
    pytest.importorskip("torch")
    import inspect

    rule = rules.rule_class(name)()
    sig = inspect.signature(torch_class(name)).parameters
    for field, value in rule.peer_kwargs("torch").items():
        assert field in sig, field
        assert sig[field].default == value, field


PRESETS = [pytest.param(name, convention, id=f"{name}-{convention}")
           for name, cls in rules.RULES.items() for convention in cls.PRESETS]


@pytest.mark.parametrize("name,convention", PRESETS)
def test_every_preset_exists_and_validates(name, convention):
    cls = rules.rule_class(name)
    rule = rules.preset(name, convention)
    assert rule.name == name and rule == cls(**cls.PRESETS[convention])
    assert rules.preset(name, convention, lr=0.5) == rule.replace(lr=0.5)
    assert convention in rules.CONVENTIONS


def test_preset_errors():
    with pytest.raises(ValueError, match="convention"):
        rules.preset(next(iter(rules.RULES)), "keras")
    with pytest.raises(ValueError, match="rule"):
        rules.preset("no-such-rule", "torch")


@pytest.mark.parametrize("name", list(rules.RULES))
def test_state_names_and_traffic(name):
    cls = rules.rule_class(name)
    for _, rule in option_cases(base(cls)):
        assert set(rule.state_names) <= set(cls.STATE) and cls.SECOND_MOMENTS <= set(cls.STATE)
        # read p, g and each state; write p and each state
        assert rule.accesses_per_element == 3 + 2 * len(rule.state_names)
    assert base(cls).replace(**everything(base(cls))).state_names == cls.STATE


@pytest.mark.parametrize("name", list(rules.RULES))
def test_oracle_maximize_negates_the_gradient_before_weight_decay(name):
    """As torch.optim: maximize then coupled weight decay, so ascending on g is descending
    on -g, weight decay included."""
    rule = base(rules.rule_class(name)).replace(weight_decay=0.1)
    up, up_state = reference.run(rule.replace(maximize=True), np.array([1.0, -2.0]), [np.array([0.5, 0.25])] * 2)
    down, down_state = reference.run(rule, np.array([1.0, -2.0]), [np.array([-0.5, -0.25])] * 2)
    np.testing.assert_array_equal(up, down)
    for key in up_state:
        np.testing.assert_array_equal(up_state[key], down_state[key])


@pytest.mark.parametrize("name", list(rules.RULES))
def test_oracle_does_not_modify_its_inputs(name):
    rule = base(rules.rule_class(name))
    rule = rule.replace(**everything(rule))
    p = np.ones(3)
    state = reference.init_state(rule, p)
    before = {k: np.copy(v) for k, v in state.items()}
    reference.step(rule, p, np.ones(3), state)
    assert np.array_equal(p, np.ones(3))
    assert all(np.array_equal(state[k], before[k]) for k in before)


@pytest.mark.parametrize("name", list(rules.RULES))
def test_oracle_refuses_shape_mismatch(name):
    rule = base(rules.rule_class(name))
    with pytest.raises(ValueError, match="shape"):
        reference.step(rule, np.ones(3), np.ones(4), reference.init_state(rule, np.ones(3)))


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
