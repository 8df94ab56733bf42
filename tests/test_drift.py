"""Un-synchronised drift: 1000 steps in float32 from the same start and gradients as the
float64 oracle, never re-synchronised.

The bound, per element: |p_N - p*_N| <= u * sum_k (|p*_k| + |p*_k - p*_{k-1}|), u = 2**-24.
That is the error of at most one rounding per step of each operand of ``p + delta``: it
holds as long as errors in delta and in the state do not compound, which is what the rules
guarantee (the update is normalised and the state is a sum or contracting average of
squares, so a relative state error stays relative). Measured on the tutorial's model: the
error is 2-4 % of this bound (relative error 1e-6 to 3e-6 after 1000 steps), i.e. the
roundings behave like a random walk (sqrt(N)) rather than adding up in the worst case.
"""

from __future__ import annotations

import pytest

pytest.importorskip("jax")

import numpy as np  # noqa: E402

from adaptbench import rules  # noqa: E402
from adaptbench.rules import reference  # noqa: E402
from tests.implementations import IMPLEMENTATIONS  # noqa: E402
from tests.registry_cases import base, everything  # noqa: E402
from tests.test_parity import _round  # noqa: E402

STEPS = 1000
SHAPES = [(4, 3), (3,)]
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}

# Each convention, and each rule with every term on at once (coupled weight decay 1e-2).
RULE_CASES = [
    pytest.param(rules.preset(name, convention), id=f"{name}-{convention}")
    for name, cls in rules.RULES.items()
    for convention in cls.PRESETS
] + [
    pytest.param(rule.replace(**everything(rule)), id=f"{name}-all")
    for name, cls in rules.RULES.items()
    for rule in [base(cls)]
]


@pytest.fixture(scope="module")
def oracle_runs():
    """rule -> (float32 start, grads, float64 final params, drift budget), computed once."""
    cache = {}

    def get(rule, dtype):
        key = (rule, dtype)
        if key not in cache:
            rng = np.random.default_rng(1)
            params = [_round(rng.normal(size=s), dtype) for s in SHAPES]
            grads = [[_round(rng.normal(size=s), dtype) for s in SHAPES] for _ in range(STEPS)]
            ps, states = params, [reference.init_state(rule, p) for p in params]
            budget = [np.zeros(s) for s in SHAPES]
            for gs in grads:
                stepped = [reference.step(rule, p, g, s) for p, g, s in zip(ps, gs, states)]
                for b, (new, _), old in zip(budget, stepped, ps):
                    b += np.abs(new) + np.abs(new - old)
                ps, states = [x[0] for x in stepped], [x[1] for x in stepped]
            cache[key] = (params, grads, ps, [UNIT_ROUNDOFF[dtype] * b for b in budget])
        return cache[key]

    return get


@pytest.mark.parametrize("impl", [i for i in IMPLEMENTATIONS if "strided" not in i.id], ids=lambda i: i.id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", RULE_CASES)
def test_drift_over_1000_steps_is_bounded(rule, dtype, impl, oracle_runs):
    params, grads, final, budget = oracle_runs(rule, dtype)
    run = impl.start(rule, params, dtype)
    for gs in grads:
        run.step(gs)
    got, _ = run.values()
    for i, (g, want, b) in enumerate(zip(got, final, budget)):
        err = np.abs(g - want)
        assert np.all(err <= b), (
            f"leaf {i}: drift {np.max(err):.3g} exceeds the bound at {np.argmax(err - b)}; "
            f"worst fraction of the bound {np.max(err / b):.3f}"
        )
