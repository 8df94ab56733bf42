"""Shared fixtures: the ulp report printed after the parity tests."""

from __future__ import annotations

import collections

import pytest

_ULPS: dict[tuple[str, str, str], float] = collections.defaultdict(float)


@pytest.fixture
def ulp_report():
    """Record the worst error in ulps per (implementation, rule, dtype) for the summary."""

    def record(impl: str, rule: str, dtype: str, ulps: float) -> None:
        key = (impl, rule, dtype)
        _ULPS[key] = max(_ULPS[key], ulps)

    return record


def pytest_sessionfinish(session):
    """An xdist worker hands its ulps to the controller, which prints the one summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["adaptbench_ulps"] = [[*key, ulps] for key, ulps in _ULPS.items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for impl, rule, dtype, ulps in getattr(node, "workeroutput", {}).get("adaptbench_ulps", []):
        key = (impl, rule, dtype)
        _ULPS[key] = max(_ULPS[key], ulps)


def pytest_terminal_summary(terminalreporter):
    if not _ULPS:
        return
    tr = terminalreporter
    tr.section("single-step error against the float64 oracle (max ulps of the working dtype)")
    impls = sorted({k[0] for k in _ULPS})
    columns = sorted({(k[1], k[2]) for k in _ULPS})
    tr.write_line(f"{'implementation':<28}" + "".join(f"{r + '/' + d:>20}" for r, d in columns))
    for impl in impls:
        cells = "".join(f"{_ULPS.get((impl, r, d), float('nan')):>20.2f}" for r, d in columns)
        tr.write_line(f"{impl:<28}{cells}")
