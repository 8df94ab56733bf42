"""The report generator on a real (tiny) pytest-benchmark session: outputs, consistency,
roofline flagging, comparison with the previous run, error paths, atomic writes.

No timing is asserted: the numbers come from a few rounds on a shared machine."""

from __future__ import annotations

import copy
import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest

from bench import __main__ as bench_main
from bench import machine
from bench.timing import report

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def session_json(tmp_path_factory) -> pathlib.Path:
    """A real benchmark session: Adagrad at 1e3 elements, fp32, CPU, every implementation, plus its probes."""
    path = tmp_path_factory.mktemp("session") / "bench.json"
    cmd = [
        sys.executable, "-m", "pytest", "bench/timing/bench_step.py", "--benchmark-only",
        "-k", "1e3-fp32-cpu and (adagrad or probe)",
        "--benchmark-min-rounds=3", "--benchmark-max-time=0.01", "--benchmark-min-time=0.00005",
        f"--benchmark-json={path}", "-q", "-p", "no:cacheprovider",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTBENCH_FULL", "ADAPTBENCH_COMMAND")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert path.exists()
    return path


@pytest.fixture
def data(session_json) -> dict:
    return json.loads(session_json.read_text())


def _write(tmp_path, obj, name="in.json") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def _run(argv) -> None:
    assert report.main(argv) == 0


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _no_temp_files(folder: pathlib.Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_session_json_is_complete(data):
    ours = [b for b in data["benchmarks"] if b["extra_info"].get("adaptbench")]
    kinds = {b["extra_info"]["kind"] for b in ours}
    assert kinds == {"step", "probe"}
    impls = {b["extra_info"]["impl"] for b in ours if b["extra_info"]["kind"] == "step"}
    assert {"torch.optim-loop", "torch.optim-foreach", "optax"} <= impls
    for b in ours:
        ei = b["extra_info"]
        assert b["group"] == (f"probe-1e3-fp32-cpu" if ei["kind"] == "probe" else "adagrad-1e3-fp32-cpu")
        assert ei["cache_resident"] in (True, None)
        if ei["kind"] == "step":
            # fp32 Adagrad: 5 accesses x 4 B; a floor (the empty jitted call) moves nothing
            assert ei["bytes_per_step"] == (0 if ei["family"] == "floor" else 20 * 1000)
            assert ei["gbps"] == pytest.approx(ei["bytes_per_step"] / b["stats"]["median"] / 1e9)
    mi = data["machine_info"]["adaptbench"]
    for key in ("cpu_model", "cores", "versions", "git", "torch", "jax", "threads", "env"):
        assert key in mi
    assert mi["torch"]["num_threads"] == mi["threads"]["requested"]
    assert "intra_op_parallelism_threads" in mi["env"]["XLA_FLAGS"]
    assert data["adaptbench"]["schema"] == report.SCHEMA


def test_report_writes_tables_and_plots(session_json, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(session_json), "--out", str(out)])
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "results.csv", "probe.csv", "benchmark.json",
            "time-cpu-fp32.png", "roofline-cpu-fp32.png"} <= names
    assert "previous.json" not in names
    for png in ("time-cpu-fp32.png", "roofline-cpu-fp32.png"):
        assert (out / png).read_bytes().startswith(PNG)
    md = (out / "README.md").read_text()
    for needle in ("How this was made", "command:", "commit:", "machine:", "threads:", "cache residency",
                   "### adagrad (cpu, fp32)", "torch.optim-loop", "optax", "time-cpu-fp32.png"):
        assert needle in md
    stored = json.loads((out / "benchmark.json").read_text())
    assert all("data" not in b["stats"] for b in stored["benchmarks"])
    _no_temp_files(out)


def test_tables_follow_the_json_medians(data, session_json, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(session_json), "--out", str(out)])
    steps = {b["extra_info"]["impl"]: b for b in data["benchmarks"] if b["extra_info"].get("kind") == "step"}
    probes = [b for b in data["benchmarks"] if b["extra_info"].get("kind") == "probe"]
    assert {b["extra_info"]["working_set_arrays"] for b in probes} == {3, 4}
    # Adagrad touches 3 arrays (p, g, sum): its roofline is the best probe sized to that working set.
    roof = max(b["extra_info"]["bytes_per_call"] / b["stats"]["median"] / 1e9
               for b in probes if b["extra_info"]["working_set_arrays"] == 3)
    best_torch = min(b["stats"]["median"] for k, b in steps.items() if k.startswith("torch.optim"))
    optax = steps["optax"]["stats"]["median"]
    rows = _csv(out / "results.csv")
    assert {r["impl"] for r in rows} == set(steps)
    assert "jax-empty-jit" in steps
    for r in rows:
        median = steps[r["impl"]]["stats"]["median"]
        assert float(r["median_us"]) == pytest.approx(median * 1e6)
        assert float(r["speedup_vs_torch_optim"]) == pytest.approx(best_torch / median)
        assert float(r["speedup_vs_optax"]) == pytest.approx(optax / median)
        if r["family"] == "floor":
            assert r["roofline_fraction"] == "" and r["probe_error"] == ""
            continue
        gbps = 20_000 / median / 1e9
        assert float(r["gbps"]) == pytest.approx(gbps)
        assert float(r["roofline_gbps"]) == pytest.approx(roof)
        if gbps <= roof:
            assert float(r["roofline_fraction"]) == pytest.approx(gbps / roof)
            assert r["probe_error"] == ""
    assert len(_csv(out / "probe.csv")) == len(probes)
    # the headline pits our fastest in each framework against that framework's fastest peer
    ours_torch = min(b["stats"]["median"] for k, b in steps.items() if k.startswith("ours-torch"))
    ours_jax = min(b["stats"]["median"] for k, b in steps.items() if k.startswith("ours-jax"))
    line = (out / "headline.md").read_text().splitlines()[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:4] == ["cpu", "fp32", "adagrad", "1e3"]
    assert float(cells[6].rstrip("x")) == pytest.approx(best_torch / ours_torch, abs=0.006)
    assert float(cells[9].rstrip("x")) == pytest.approx(optax / ours_jax, abs=0.006)
    empty = steps["jax-empty-jit"]["stats"]["median"]
    assert float(cells[10].rstrip("x")) == pytest.approx(ours_jax / empty, abs=0.006)


def test_fraction_above_one_is_a_probe_error(data, tmp_path):
    slow_probe = copy.deepcopy(data)
    for b in slow_probe["benchmarks"]:
        if b["extra_info"].get("kind") == "probe":
            b["stats"]["median"] *= 1e6  # the probe now "moves" far less than any step
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, slow_probe)), "--out", str(out)])
    rows = _csv(out / "results.csv")
    movers = [r for r in rows if r["family"] != "floor"]
    assert movers and all(r["probe_error"] and r["roofline_fraction"] == "" for r in movers)
    md = (out / "README.md").read_text()
    assert "probe error" in md and "Steps that beat the probe" in md
    roofline_rows = md.split("Fraction of the bandwidth roofline:")[1].split("<details>")[0]
    assert "%" not in roofline_rows


def test_comparison_with_the_previous_run(data, session_json, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(session_json), "--out", str(out)])
    slower = copy.deepcopy(data)
    slower["datetime"] = "later"
    for b in slower["benchmarks"]:
        b["stats"]["median"] *= 2
    _run(["--json", str(_write(tmp_path, slower)), "--out", str(out)])
    assert (out / "previous.json").exists()
    assert json.loads((out / "benchmark.json").read_text())["datetime"] == "later"
    rows = _csv(out / "results.csv")
    assert all(float(r["change"]) == pytest.approx(2.0) for r in rows)
    assert all(float(r["previous_median_us"]) * 2 == pytest.approx(float(r["median_us"])) for r in rows)
    md = (out / "README.md").read_text()
    assert "Change since the previous run" in md and "2.00x **slower**" in md
    # Ingesting the same run again keeps the previous one; regenerating without --json too.
    before = (out / "previous.json").read_bytes()
    _run(["--json", str(_write(tmp_path, slower, "again.json")), "--out", str(out)])
    _run(["--out", str(out)])
    assert (out / "previous.json").read_bytes() == before
    _no_temp_files(out)


def _expect_error(capsys, argv, *needles) -> None:
    with pytest.raises(SystemExit) as info:
        report.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bench report: error:" in err and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys, data):
    out = tmp_path / "out"
    _expect_error(capsys, ["--json", str(tmp_path / "missing.json"), "--out", str(out)], "no such file")
    (tmp_path / "bad.json").write_text("{not json")
    _expect_error(capsys, ["--json", str(tmp_path / "bad.json"), "--out", str(out)], "not JSON")
    _expect_error(capsys, ["--json", str(_write(tmp_path, [1, 2])), "--out", str(out)], "no 'benchmarks'")
    _expect_error(capsys, ["--json", str(_write(tmp_path, {"machine_info": {}})), "--out", str(out)], "no 'benchmarks'")
    _expect_error(capsys, ["--json", str(_write(tmp_path, {"benchmarks": []})), "--out", str(out)], "no benchmarks")
    foreign = copy.deepcopy(data)
    for b in foreign["benchmarks"]:
        b["extra_info"] = {"answer": 42}
    _expect_error(capsys, ["--json", str(_write(tmp_path, foreign)), "--out", str(out)], "foreign")
    broken = copy.deepcopy(data)
    del broken["benchmarks"][-1]["extra_info"]["device"]
    broken["benchmarks"][-1]["extra_info"]["kind"] = "step"
    _expect_error(capsys, ["--json", str(_write(tmp_path, broken)), "--out", str(out)], "lacks")
    _expect_error(capsys, ["--out", str(out)], "no such file")
    assert not out.exists() or not any(out.iterdir())


def test_cli_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "report", "--json", str(tmp_path / "nope.json"),
                           "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "x.md"
    report.atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        report.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    _no_temp_files(tmp_path)


def test_train_is_routed_lazily(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("bench.training.train")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "bench.training.train", fake)
    import bench.training

    monkeypatch.setattr(bench.training, "train", fake, raising=False)
    assert bench_main.main(["train", "--epochs", "3"]) == 0
    assert seen == [["--epochs", "3"]]
    assert bench_main.main(["nonsense"]) == 2


def test_machine_slug():
    assert machine.slug({"gpus": ["NVIDIA H100 80GB HBM3"]}) == "gpu-nvidia-h100-80gb-hbm3"
    assert machine.slug({"cpu_model": "AMD EPYC 7B13 64-Core Processor", "cores": {"usable": 2}}) == \
        "cpu-amd-epyc-7b13-64-core-2c"
    assert machine.slug({"cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cores": {"usable": 4}}) == "cpu-intel-xeon-4c"
