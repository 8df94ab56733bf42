"""Shared fixtures: the ulp report printed after the parity tests; the --require-tests guard."""

from __future__ import annotations

import collections

import pytest

_ULPS: dict[tuple[str, str, str], float] = collections.defaultdict(float)

# --require-tests (`make test-torch-latest`): a run in which no test ran is a failure (exit 1),
# never pytest's exit code 5 (nothing collected) nor a green run of nothing but skips.
_NOTHING_RAN = pytest.StashKey[bool]()


def pytest_addoption(parser):
    parser.addoption("--require-tests", action="store_true",
                     help="exit 1 when no test ran: nothing collected, or every test skipped or deselected")


@pytest.fixture
def ulp_report():
    """Record the worst error in ulps per (implementation, rule, dtype) for the summary."""

    def record(impl: str, rule: str, dtype: str, ulps: float) -> None:
        key = (impl, rule, dtype)
        _ULPS[key] = max(_ULPS[key], ulps)

    return record


def _ran(config) -> int:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return 0
    return sum(len(reporter.stats.get(k, [])) for k in ("passed", "failed", "error", "xfailed", "xpassed"))


def pytest_sessionfinish(session):
    """An xdist worker hands its ulps to the controller, which prints the one summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["adaptbench_ulps"] = [[*key, ulps] for key, ulps in _ULPS.items()]
    elif session.config.getoption("require_tests") and _ran(session.config) == 0:
        session.config.stash[_NOTHING_RAN] = True
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for impl, rule, dtype, ulps in getattr(node, "workeroutput", {}).get("adaptbench_ulps", []):
        key = (impl, rule, dtype)
        _ULPS[key] = max(_ULPS[key], ulps)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if tr.config.stash.get(_NOTHING_RAN, False):
        tr.write_line("--require-tests: no test ran (nothing collected, or every test skipped or deselected)",
                      red=True, bold=True)
    if not _ULPS:
        return
    tr.section("single-step error against the float64 oracle (max ulps of the working dtype)")
    impls = sorted({k[0] for k in _ULPS})
    columns = sorted({(k[1], k[2]) for k in _ULPS})
    tr.write_line(f"{'implementation':<28}" + "".join(f"{r + '/' + d:>20}" for r, d in columns))
    for impl in impls:
        cells = "".join(f"{_ULPS.get((impl, r, d), float('nan')):>20.2f}" for r, d in columns)
        tr.write_line(f"{impl:<28}{cells}")
