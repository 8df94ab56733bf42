"""Every implementation against the float64 oracle (rules.reference), after every step.

The same float64 NumPy arrays, rounded to the working dtype, feed every implementation.
Single-step error is measured from re-synchronised inputs: before each step, params and
state are reset to the oracle's trajectory rounded to the dtype, so one step's error is
judged alone. Elementwise check, per leaf:

    |actual - expected| <= rtol * |expected| + atol * max|expected over the leaf|

with (rtol, atol) from rules.tolerance(dtype) (PyTorch's optimizer-test tolerances). The
atol term is scaled by the leaf's magnitude so that leaves of very different scale are
judged alike. The worst error in ulps is printed in the summary after the run.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import rules
from rules import reference
from tests.implementations import IMPLEMENTATIONS

# Scalar, the tutorial's softmax regression on Iris ([4, 3] weight + [3] bias), a large flat
# tensor; per-leaf gradient scales span five decades.
SHAPES = [(), (4, 3), (3,), (1 << 15,)]
GRAD_SCALES = [1.0, 1e-3, 10.0, 1e-1]
STEPS = 6


def _configs(rule):
    """(id, overrides) hyperparameter configurations that apply to ``rule``."""
    yield "defaults", {}
    yield "weight_decay", {"weight_decay": 0.1}
    yield "maximize", {"maximize": True}
    yield "eps_flipped", {"eps_in_sqrt": not rule.eps_in_sqrt}
    yield "large_eps", {"eps": 1e-1}
    yield "zero_eps", {"eps": 0.0}
    if isinstance(rule, rules.Adagrad):
        yield "lr_decay", {"lr_decay": 0.5}
        yield "accumulator", {"initial_accumulator_value": 0.5}
    if isinstance(rule, rules.RMSprop):
        yield "centered", {"centered": True}
        yield "momentum", {"momentum": 0.9}
        yield "centered_momentum", {"centered": True, "momentum": 0.5, "weight_decay": 0.01}


RULE_CASES = [
    pytest.param(base.replace(**overrides), id=f"{name}-{convention}-{config}")
    for name in sorted(rules.RULES)
    for convention in rules.CONVENTIONS
    for base in [rules.preset(name, convention)]
    for config, overrides in _configs(base)
]

IMPL_CASES = [
    pytest.param(impl, dtype, id=f"{impl.id}-{dtype}")
    for impl in IMPLEMENTATIONS
    for dtype in impl.dtypes
]


def _problem(seed: int, steps: int, shapes=SHAPES, scales=GRAD_SCALES):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in shapes]
    grads = [[scale * rng.normal(size=s) for s, scale in zip(shapes, scales)] for _ in range(steps)]
    return params, grads


def _round(x, dtype: str) -> np.ndarray:
    """float64 -> dtype -> float64, bf16 included (NumPy lacks it)."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "bfloat16":
        return reference._round_to_bfloat16(x)
    return x.astype(dtype).astype(np.float64)


def _round_state(state: dict, dtype: str) -> dict:
    return {k: (v if k == "step" else _round(v, dtype)) for k, v in state.items()}


def _check_leaf(actual, expected, dtype: str, what: str) -> float:
    """Assert the tolerance; return the worst distance in ulps."""
    tol = rules.tolerance(dtype)
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = float(np.max(np.abs(expected), initial=0.0, where=np.isfinite(expected)))
    np.testing.assert_allclose(actual, expected, rtol=tol.rtol, atol=tol.atol * scale, equal_nan=True, err_msg=what)
    return float(np.max(reference.ulp_distance(actual, expected, dtype), initial=0.0))


@pytest.mark.parametrize("impl,dtype", IMPL_CASES)
@pytest.mark.parametrize("rule", RULE_CASES)
def test_single_step_matches_oracle(rule, impl, dtype, ulp_report):
    params, grads = _problem(seed=zlib.crc32(repr(rule).encode()), steps=STEPS)
    params = [_round(p, dtype) for p in params]
    run = impl.start(rule, params, dtype)
    oracle_p = params
    oracle_s = [reference.init_state(rule, p) for p in params]
    worst = 0.0
    for k, gs in enumerate(grads):
        gs = [_round(g, dtype) for g in gs]
        start_p = [_round(p, dtype) for p in oracle_p]
        start_s = [_round_state(s, dtype) for s in oracle_s]
        run.load(start_p, start_s)
        run.step(gs)
        got_p, got_s = run.values()
        for i, (p, g, s) in enumerate(zip(start_p, gs, start_s)):
            want_p, want_s = reference.step(rule, p, g, s)
            where = f"step {k + 1}, leaf {i} shape {SHAPES[i]}"
            worst = max(worst, _check_leaf(got_p[i], want_p, dtype, f"param, {where}"))
            for name in rule.state_names:
                _check_leaf(got_s[i][name], want_s[name], dtype, f"state {name!r}, {where}")
            assert got_s[i]["step"] == want_s["step"], where
        stepped = [reference.step(rule, p, g, s) for p, g, s in zip(oracle_p, gs, oracle_s)]
        oracle_p, oracle_s = [x[0] for x in stepped], [x[1] for x in stepped]
    ulp_report(impl.id, rule.name, dtype, worst)
