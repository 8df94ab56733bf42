"""A rule registered from a user's own module (``tests/user_rule.py``: sign descent with
momentum) runs through the registry-driven suites with no other edit.

One pytest run in a subprocess, loading the module with ``--rules-module`` as a user would,
selects the rule's cases (``-k``) in the suites that prove agreement: oracle parity across
every implementation (torch loop, foreach, fused, non-contiguous views; JAX ``make_step``
and the transformation), the specification's and the optimizer's refusals of bad input,
state-dict round trips, the JAX transformation's contracts, the fused kernel and the
stand-in device; and asserts from its report that each suite ran the rule's cases and
every one passed. In this process: what the module registers, and what ``rules.register``
refuses.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

# The suites it runs on the user's rule include the JAX ones; make test-torch-latest has
# no JAX.
pytest.importorskip("jax")

import numpy as np  # noqa: E402

from adaptbench import rules  # noqa: E402
from adaptbench.rules import registry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# suite -> what of it runs the rule (a -k expression), kept to about a minute of CPU: the
# parity grid's configuration with every term on, under every implementation and dtype
# (each configuration compiles its own graphs), and the stand-in device's defaults and
# every-term configurations; every case of the rest.
SUITES = {
    "tests/test_parity.py": "torch-all",
    "tests/test_rules.py": None,
    "tests/test_torch_optimizer.py": None,
    "tests/test_jax_transforms.py": None,
    "tests/test_torch_fused.py": None,
    "tests/test_torch_stand_in_device.py": "defaults or all",
}
# A check each suite must have run on the rule, by test name: the list.
REQUIRED = {
    "tests/test_parity.py": ["test_single_step_matches_oracle"],
    "tests/test_rules.py": ["test_bad_hyperparameter_names_the_argument"],
    "tests/test_torch_optimizer.py": ["test_state_dict_round_trip", "test_refusals", "test_loop_equals_foreach_on_cpu"],
    "tests/test_jax_transforms.py": ["test_transformation_of_rule_equals_factory",
                                     "test_make_step_equals_transformation_plus_apply_updates"],
    "tests/test_torch_fused.py": ["test_fused_agrees_with_loop_after_every_step"],
    "tests/test_torch_stand_in_device.py": ["test_two_steps_on_the_stand_in_device"],
}
IMPLS = ["torch-loop", "torch-foreach", "torch-fused", "torch-loop-strided", "torch-foreach-strided",
         "jax-make_step", "jax-transformation"]


def _selection() -> str:
    per_suite = [f"({Path(s).stem} and ({k}))" if k else Path(s).stem for s, k in SUITES.items()]
    return f"signdescent and ({' or '.join(per_suite)})"


@pytest.fixture(scope="module")
def report():
    """The subprocess's result lines, ``(outcome, node id)``, and its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--rules-module", "tests.user_rule", "-k", _selection(),
         "-p", "no:cacheprovider", "--benchmark-skip", "-q", "-rA", *SUITES],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    lines = re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", result.stdout, re.M)
    return result, lines


def test_the_suites_run_the_users_rule_and_pass(report):
    result, lines = report
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    bad = [node for outcome, node in lines if outcome in ("FAILED", "ERROR", "XPASS")]
    assert not bad, tail
    passed = collections.Counter(node.split("::")[0] for outcome, node in lines
                                 if outcome == "PASSED" and "signdescent" in node)
    print(f"signdescent cases passed: {sum(passed.values())} {dict(passed)}")
    for suite in SUITES:
        assert passed[suite] > 0, f"{suite} ran no signdescent case: {tail}"
    ran = {node.split("::")[1].split("[")[0] for outcome, node in lines if outcome == "PASSED"}
    for suite, tests in REQUIRED.items():
        for test in tests:
            assert test in ran, f"{suite}::{test} ran no signdescent case"
    oracle = [node for outcome, node in lines if outcome == "PASSED" and "test_single_step_matches_oracle" in node]
    for impl in IMPLS:
        assert any(f"-{impl}-" in node for node in oracle), f"no oracle parity case on {impl}"


@pytest.fixture
def user_rule():
    """``tests.user_rule`` imported here; its registrations undone afterwards when this
    test made them, so that later tests in this process see the registry they collected."""
    import impl_jax
    import impl_torch
    from impl_jax import _core
    from impl_torch import optimizer, updates

    tables = [registry._RULES, updates.UPDATES, updates.SPARSE_UPDATES, _core.SPECS,
              optimizer._CLASS_CACHE, optimizer._FIELDS]
    saved = [dict(t) for t in tables]
    constructing = set(updates.STATE_AT_CONSTRUCTION)
    imported = "tests.user_rule" not in sys.modules
    yield importlib.import_module("tests.user_rule"), impl_torch, impl_jax
    if imported:
        for table, before in zip(tables, saved):
            table.clear()
            table.update(before)
        updates.STATE_AT_CONSTRUCTION.clear()
        updates.STATE_AT_CONSTRUCTION.update(constructing)
        del sys.modules["tests.user_rule"]


def test_the_module_registers_the_rule_everywhere(user_rule):
    module, impl_torch, impl_jax = user_rule
    from impl_jax import _core

    cls = module.SignDescent
    assert rules.RULES["signdescent"] is cls and list(rules.RULES)[-1] == "signdescent"
    assert rules.preset("signdescent", "seed") == cls(lr=0.02)
    opt_cls = impl_torch.optimizer_class("signdescent")
    assert opt_cls.__name__ == "SignDescent" and impl_torch.SignDescent is opt_cls
    assert opt_cls.rule_class is cls
    assert "signdescent" in _core.SPECS and _core.SPECS["signdescent"].rule_cls is cls
    # one step through each framework, against the oracle
    rule = cls(lr=0.1, beta=0.5)
    p0, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, -0.25, -1.0])
    want, _ = rules.reference.step(rule, p0, g, rules.reference.init_state(rule, p0))
    import torch

    p = torch.nn.Parameter(torch.tensor(p0))
    opt = impl_torch.optimizer_for(rule, [p])
    p.grad = torch.tensor(g)
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-15)
    import jax.numpy as jnp

    tx = impl_jax.transformation(rule)
    params = {"w": jnp.asarray(p0, jnp.float32)}
    updates, _ = tx.update({"w": jnp.asarray(g, jnp.float32)}, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(params["w"] + updates["w"]), want, rtol=1e-6)


def _rule_class(name: str, oracle: bool = True, presets: dict | None = None):
    """A minimal rule class (one field beyond ``Rule``'s) to hand to ``rules.register``."""

    def reference_update(self, p, g, state, new, decay):
        return decay(p, self.lr) - self.lr * g

    namespace = {
        "__annotations__": {"name": ClassVar[str], "PRESETS": ClassVar[dict], "lr": float},
        "name": name, "PRESETS": presets or {"torch": {}}, "lr": 0.1,
        **({"reference_update": reference_update} if oracle else {}),
    }
    return dataclasses.dataclass(frozen=True, kw_only=True)(type("Probe", (rules.Rule,), namespace))


def test_a_rule_that_is_not_frozen_is_refused_where_it_is_written():
    # dataclasses refuses it before register could: Rule is frozen
    with pytest.raises(TypeError, match="non-frozen"):
        dataclasses.dataclass(kw_only=True)(type("Probe", (rules.Rule,), {"__annotations__": {"beta": float}}))


@pytest.mark.parametrize(
    "make, exc, match",
    [
        pytest.param(lambda: _rule_class("probe", oracle=False), TypeError, "defines no reference_update",
                     id="no-reference_update"),
        pytest.param(lambda: _rule_class("probe", presets={"torch": {"momentum": 0.9}}), ValueError,
                     r"PRESETS\['torch'\] names \['momentum'\], which are not its fields", id="preset-unknown-field"),
        pytest.param(lambda: _rule_class("probe", presets={"keras": {}}), ValueError,
                     "PRESETS names 'keras'", id="preset-unknown-convention"),
        pytest.param(lambda: _rule_class(next(iter(rules.RULES))), ValueError, "is already registered",
                     id="duplicate-name"),
        pytest.param(lambda: _rule_class("Probe"), ValueError, "lower-case", id="name-not-lower-case"),
        pytest.param(lambda: dict, TypeError, "derived from rules.Rule", id="not-a-rule"),
        pytest.param(lambda: type("Probe", (rules.Rule,), {"__annotations__": {"beta": float}, "name": "probe"}),
                     TypeError, "decorated with @dataclasses.dataclass", id="not-itself-a-dataclass"),
    ],
)
def test_register_refuses_a_bad_class_clearly(make, exc, match):
    names = list(rules.RULES)
    with pytest.raises(exc, match=match):
        rules.register(make())
    assert list(rules.RULES) == names
