"""The Keras benchmark peers' plumbing (bench/timing/keras_cases.py, keras_run.py), without Keras."""

import pytest

from adaptbench import rules
from bench import peers
from bench.timing import cases, keras_cases, keras_run


@pytest.mark.parametrize(
    "extra, backend, expected",
    [
        ([], "jax", ["-k", "keras-jax"]),
        (["-x", "-k", "a or b"], "torch", ["-x", "-k", "(a or b) and keras-torch"]),
        (["-kadagrad", "-q"], "jax", ["-k", "(adagrad) and keras-jax", "-q"]),
    ],
    ids=["no-k", "k-separate", "k-joined"],
)
def test_keras_run_narrows_the_selection_to_one_backend(extra, backend, expected):
    assert keras_run.select(extra, backend) == expected


def test_keras_impls_are_in_the_sweep_as_peers():
    ids = {impl.id: impl for impl in cases.impls()}
    for backend in keras_cases.BACKENDS:
        impl = ids[f"keras-{backend}"]
        assert impl.family == "peer" and impl.framework == backend
        assert keras_cases.backend_of(impl) == backend


def test_keras_case_is_skipped_in_a_process_of_another_backend(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    reason = keras_cases.unavailable_reason("jax")
    assert reason is not None and "KERAS_BACKEND=jax" in reason
    monkeypatch.setattr(keras_cases.importlib.util, "find_spec", lambda name: None)
    assert "not installed" in keras_cases.unavailable_reason("torch")


@pytest.mark.parametrize("name", [n for n in rules.RULES if "keras" in rules.RULES[n].PEERS])
def test_keras_settings_follow_the_rule(name):
    rule = rules.preset(name, cases.CONVENTION)
    spec = rule.PEERS["keras"]
    settings = keras_cases.keras_settings(rule)
    assert settings.pop("optimizer") == spec.name
    assert settings == {spec.keywords.get(f, f): v for f, v in rule.as_dict().items() if f not in spec.fixed}
    with pytest.raises(ValueError, match="decoupled"):
        keras_cases.keras_settings(rule.replace(weight_decay=0.1))
    assert keras_cases.keras_settings(rule.replace(weight_decay=0.1, decoupled_weight_decay=True))["weight_decay"] == 0.1


def test_a_zero_where_the_peer_defaults_to_none_is_given_as_none():
    def factory(learning_rate, momentum=None, weight_decay=None, nesterov=False):
        pass

    assert peers.off_as_none(factory, {"learning_rate": 0.1, "momentum": 0.0, "weight_decay": 0.5, "nesterov": False}) \
        == {"learning_rate": 0.1, "momentum": None, "weight_decay": 0.5, "nesterov": False}


@pytest.mark.parametrize("name", [n for n in rules.RULES if "keras" not in rules.RULES[n].PEERS])
def test_a_rule_without_a_keras_peer_is_not_timed_against_keras(name):
    """Adam and AdamW name no Keras peer: Keras adds eps to sqrt(v) before v's bias
    correction, which no setting of theirs does (tests/test_reference_keras.py measures
    it), so timing keras.optimizers.Adam would not time the same update."""
    with pytest.raises(ValueError):
        keras_cases.keras_settings(rules.preset(name, cases.CONVENTION))
    assert not [spec for spec in cases.step_specs() if spec.rule == name and keras_cases.handles(spec.impl)]
