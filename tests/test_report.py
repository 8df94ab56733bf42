"""The report generator on a real (tiny) pytest-benchmark session: outputs, consistency,
roofline flagging, thread budgets, the recommendation, comparison with the previous run,
slices that never replace a whole run, error paths, atomic writes.

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
from bench import machine, threads, writer
from bench.timing import report, run
from bench.timing.reporting import frame, freshness, markdown, store

ROOT = pathlib.Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _bench_env() -> dict:
    """This environment minus what would change a child benchmark run: the sweep's own
    settings, and pytest-xdist's worker variables (pytest-benchmark disables itself, and
    refuses --benchmark-only, when it sees them)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("ADAPTBENCH_FULL", "ADAPTBENCH_COMMAND") and not k.startswith("PYTEST_XDIST")}


@pytest.fixture(scope="module")
def session_json(tmp_path_factory) -> pathlib.Path:
    """A real benchmark session at one pinned thread: Adagrad at 1e3 elements, fp32, CPU,
    every implementation; its probes come with it although ``-k`` does not name them."""
    pytest.importorskip("jax")  # the session times the JAX implementations and probe too
    path = tmp_path_factory.mktemp("session") / "bench.json"
    cmd = [
        sys.executable, "-m", "pytest", "bench/timing/bench_step.py", "--benchmark-only",
        "-k", "adagrad-1e3-fp32-cpu",
        "--benchmark-min-rounds=3", "--benchmark-max-time=0.01", "--benchmark-min-time=0.00005",
        f"--benchmark-json={path}", "-q", "-p", "no:cacheprovider",
    ]
    env = _bench_env()
    env["ADAPTBENCH_THREADS"] = "1"
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


def _unpad(text: str) -> str:
    """``text`` with its Markdown tables' cells stripped of the padding that aligns them."""
    return "\n".join("| " + " | ".join(c.strip() for c in line.strip().strip("|").split("|")) + " |"
                     if line.startswith("|") else line for line in text.splitlines())


def _no_temp_files(folder: pathlib.Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_session_json_is_complete(data):
    ours = [b for b in data["benchmarks"] if b["extra_info"].get("adaptbench")]
    kinds = {b["extra_info"]["kind"] for b in ours}
    assert kinds == {"step", "probe"}
    impls = {b["extra_info"]["impl"] for b in ours if b["extra_info"]["kind"] == "step"}
    assert {"torch.optim-loop", "torch.optim-foreach", "optax"} <= impls
    # Adagrad touches 3 arrays: only the probes sized to that working set came back.
    assert {b["extra_info"]["working_set_arrays"] for b in ours if b["extra_info"]["kind"] == "probe"} == {3}
    for b in ours:
        ei = b["extra_info"]
        assert b["group"] == ("probe-1e3-fp32-cpu-t1" if ei["kind"] == "probe" else "adagrad-1e3-fp32-cpu-t1")
        assert b["name"].endswith("-t1]")
        assert (ei["thread_setting"], ei["threads"], ei["cpu_budget"]) == ("1", 1, 1)
        assert ei["threads_unpinned"] == 0  # every thread of torch and XLA on the one CPU
        assert ei["cache_resident"] in (True, None)
        if ei["kind"] == "step":
            # fp32 Adagrad: 5 accesses x 4 B; a floor (the empty jitted call) moves nothing
            assert ei["bytes_per_step"] == (0 if ei["family"] == "floor" else 20 * 1000)
            assert ei["gbps"] == pytest.approx(ei["bytes_per_step"] / b["stats"]["median"] / 1e9)
            assert isinstance(ei["temp_bytes"], int) and ei["temp_source"]
    steps = {b["extra_info"]["impl"]: b["extra_info"] for b in ours if b["extra_info"]["kind"] == "step"}
    # torch.optim's per-tensor Adagrad makes one fp32 temporary of the tensor's size (std); XLA none
    assert steps["torch.optim-loop"]["temp_bytes"] >= 4000 and steps["optax"]["temp_bytes"] == 0
    # the call overhead (bench/timing/overhead.py): the fused steps' kernels, measured beside the sweep
    for impl in ("ours-torch-fused", "torch.optim-fused"):
        ei = steps[impl]
        assert ei["kernel_calls"] == 1 and ei["kernel_s"] > 0 and ei["overhead_step_s"] > 0, ei
        assert ei["overhead_s"] == pytest.approx(ei["overhead_step_s"] - ei["kernel_s"])
    assert "kernel_s" not in steps["ours-torch-auto"]  # auto stays eager at 1e3 elements
    assert steps["ours-torch-auto"]["overhead_source"].startswith("not measured")
    assert not any("kernel_s" in ei or "overhead_error" in ei for k, ei in steps.items()
                   if k not in ("ours-torch-fused", "torch.optim-fused"))
    mi = data["machine_info"]["adaptbench"]
    for key in ("cpu_model", "cores", "versions", "git", "torch", "jax", "threads", "env"):
        assert key in mi
    assert mi["torch"]["num_threads"] == mi["threads"]["requested"] == 1
    assert mi["threads"]["affinity"] == threads.usable_cpus()[:1]
    assert "intra_op_parallelism_threads" in mi["env"]["XLA_FLAGS"]
    assert data["adaptbench"]["schema"] == frame.SCHEMA
    selection = data["adaptbench"]["selection"]
    assert selection["partial"] and selection["deselected"] > 0
    assert "bench/training/bench_training.py" in selection["files_not_collected"]


def test_report_writes_tables_and_plots(session_json, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(session_json), "--out", str(out)])
    names = {p.name for p in out.iterdir()}
    assert {"README.md", "results.csv", "probe.csv", "benchmark.json", "recommendation.md", "headline.md",
            "time-cpu-fp32-t1.png", "roofline-cpu-fp32-t1.png"} <= names
    assert "previous.json" not in names
    for png in ("time-cpu-fp32-t1.png", "roofline-cpu-fp32-t1.png"):
        assert (out / png).read_bytes().startswith(PNG)
    md = (out / "README.md").read_text()
    for needle in ("How this was made", "command:", "commit:", "machine:", "threads `1` (t1): CPU budget 1",
                   "cache residency", "### adagrad: cpu, fp32, threads 1 (pinned)", "torch.optim-loop", "optax",
                   "time-cpu-fp32-t1.png", "a slice, not the whole sweep", "Which implementation at which size",
                   "Temporary memory of one step", "Are these numbers current?"):
        assert needle in md
    # every label is defined from the JSON's own description
    labels = md.split("## Labels")[1].split("\n## ")[0]
    for b in json.loads(session_json.read_text())["benchmarks"]:
        if b["extra_info"].get("kind") == "step":
            assert f"`{b['extra_info']['impl']}`" in labels and b["extra_info"]["impl_description"] in labels
    stored = json.loads((out / "benchmark.json").read_text())
    assert all("data" not in b["stats"] for b in stored["benchmarks"])
    _no_temp_files(out)


def test_tables_follow_the_json_medians(data, session_json, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(session_json), "--out", str(out)])
    steps = {b["extra_info"]["impl"]: b for b in data["benchmarks"] if b["extra_info"].get("kind") == "step"}
    probes = [b for b in data["benchmarks"] if b["extra_info"].get("kind") == "probe"]
    # Adagrad touches 3 arrays (p, g, sum): its roofline is the best probe sized to that working set.
    assert {b["extra_info"]["working_set_arrays"] for b in probes} == {3}
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
        assert (r["thread_setting"], r["threads"], r["cpu_budget"]) == ("1", "1", "1")
        assert float(r["cpu_util"]) == pytest.approx(steps[r["impl"]]["extra_info"]["cpu_util"])
        assert int(r["temp_bytes"]) == steps[r["impl"]]["extra_info"]["temp_bytes"]
        if r["family"] == "floor":  # a lower bound, not a competitor: no speedup, no roofline
            assert r["speedup_vs_torch_optim"] == r["speedup_vs_optax"] == ""
            assert r["roofline_fraction"] == "" and r["probe_error"] == ""
            continue
        assert float(r["speedup_vs_torch_optim"]) == pytest.approx(best_torch / median)
        assert float(r["speedup_vs_optax"]) == pytest.approx(optax / median)
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
    assert cells[:5] == ["cpu", "fp32", "1 (pinned)", "adagrad", "1e3"]

    def speedup(cell, expected):
        assert float(cell.split("x")[0]) == pytest.approx(expected, abs=0.006)
        assert cell.endswith("(slower)") == (expected < 1)

    speedup(cells[7], best_torch / ours_torch)
    speedup(cells[10], optax / ours_jax)
    empty = steps["jax-empty-jit"]["stats"]["median"]
    assert float(cells[11].replace(",", "")) == pytest.approx(empty * 1e6, rel=0.01)


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
    writer.atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        writer.atomic_write_text(target, "new")
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


def _whole(data: dict) -> dict:
    """``data`` as if it were a whole sweep (the selection the harness records for one)."""
    whole = copy.deepcopy(data)
    whole["adaptbench"]["selection"] = {"partial": False, "deselected": 0, "files_not_collected": [], "args": []}
    return whole


def _snapshot(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_slice_never_replaces_a_whole_run(data, session_json, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store, "RESULTS_ROOT", tmp_path / "results")
    whole = _whole(data)
    _run(["--json", str(_write(tmp_path, whole, "whole.json"))])
    home = tmp_path / "results" / machine.slug(data["machine_info"]["adaptbench"])
    assert (home / "benchmark.json").exists()
    before = _snapshot(home)
    # --out on the whole run's folder: refused, nothing touched
    _expect_error(capsys, ["--json", str(session_json), "--out", str(home)], "never replaces")
    assert _snapshot(home) == before
    # no --out: the slice gets a folder of its own under slices/
    _run(["--json", str(session_json)])
    slices = list((home / "slices").iterdir())
    assert len(slices) == 1 and (slices[0] / "README.md").exists() and not (slices[0] / "previous.json").exists()
    assert {k: v for k, v in _snapshot(home).items() if k.parts[0] != "slices"} == before


def test_bench_run_slice_leaves_a_whole_run_untouched(data, tmp_path):
    """``python -m bench run -- -k ...`` ends in the same report step: aimed at a folder
    holding a whole run, it refuses and leaves the folder as it was."""
    home = tmp_path / "home"
    _run(["--json", str(_write(tmp_path, _whole(data), "whole.json")), "--out", str(home)])
    before = _snapshot(home)
    env = _bench_env()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--threads", "1", "--out", str(home), "--",
         "bench/timing/bench_step.py", "-k", "adagrad-iris15-fp32-cpu-torch.optim-loop",
         "--benchmark-min-rounds=1", "--benchmark-max-time=0.001", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "never replaces" in proc.stderr
    assert _snapshot(home) == before


def test_merged_runs_of_two_settings_are_one_slice_or_one_sweep(data):
    t2 = copy.deepcopy(data)
    for b in t2["benchmarks"]:
        b["name"] = b["name"].replace("-t1]", "-t2]")
        b["extra_info"].update(thread_setting="default", thread_tag="t2", cpu_budget=2, threads=2)
    merged = run.merge([_whole(t2), _whole(data)])
    assert len(merged["benchmarks"]) == 2 * len(data["benchmarks"])
    assert len({b["name"] for b in merged["benchmarks"]}) == len(merged["benchmarks"])
    assert store.selection(merged)[0] is False
    assert store.sweep(merged) == ("default", ("t1", "t2"))
    assert store.output_folder(merged).name == machine.slug(data["machine_info"]["adaptbench"])
    sliced = run.merge([_whole(t2), data])
    assert store.selection(sliced)[0] is True
    assert store.output_folder(sliced).parent.name == store.SLICES


def test_a_run_with_the_users_rules_never_lands_in_the_committed_folder(data):
    whole = _whole(data)
    whole["adaptbench"]["rules_modules"] = ["my_rules"]
    home = store.RESULTS_ROOT / machine.slug(data["machine_info"]["adaptbench"])
    assert store.output_folder(whole) == home / store.RULES
    sliced = copy.deepcopy(data)
    sliced["adaptbench"]["rules_modules"] = ["my_rules"]
    assert store.output_folder(sliced).parent == home / store.RULES / store.SLICES
    assert subprocess.run(["git", "check-ignore", "-q", str(home / store.RULES / "README.md")], cwd=ROOT).returncode == 0


def test_previous_keeps_only_runs_of_the_same_sweep(data, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, data, "a.json")), "--out", str(out)])
    other = copy.deepcopy(data)
    other["datetime"] = "2030-01-01T00:00:00"
    for b in other["benchmarks"]:
        b["extra_info"].update(thread_setting="default", thread_tag="t2", cpu_budget=2, threads=2)
    _run(["--json", str(_write(tmp_path, other, "b.json")), "--out", str(out)])
    assert not (out / "previous.json").exists() and not (out / "archive").exists()
    assert json.loads((out / "benchmark.json").read_text())["datetime"] == other["datetime"]
    assert "Change since the previous run" not in (out / "README.md").read_text()
    assert not list(out.glob("*-t1.png")) and list(out.glob("time-cpu-fp32-t2.png"))


def test_a_row_over_its_cpu_budget_is_flagged(data, tmp_path):
    greedy = copy.deepcopy(data)
    for b in greedy["benchmarks"]:
        if b["extra_info"].get("impl") == "optax":
            b["extra_info"]["cpu_util"] = 1.93  # two cores' worth in a one-CPU setting
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, greedy)), "--out", str(out)])
    flags = {r["impl"]: r["over_budget"] for r in _csv(out / "results.csv")}
    assert flags.pop("optax") == "True" and set(flags.values()) == {"False"}
    md = (out / "README.md").read_text()
    assert "**1.93 > 1** †" in md and "over its CPU budget" in md
    assert "optax" in (out / "headline.md").read_text().split("†")[0].splitlines()[-1]


def test_the_floor_is_never_a_candidate(data, tmp_path):
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, data)), "--out", str(out)])
    md = (out / "README.md").read_text()
    medians = md.split("Median us per step (fastest in bold")[1].split("Speedup over")[0]
    floor_line = next(line for line in medians.splitlines() if "jax-empty-jit" in line)
    assert "(floor)" in floor_line and "**" not in floor_line and "*" in floor_line
    speedups = md.split("Speedup over the best torch.optim")[1].split("Fraction of the bandwidth")[0]
    assert "jax-empty-jit" not in speedups
    assert "jax-empty-jit" not in (out / "recommendation.md").read_text()


def _row(impl, framework, median, iqr=0.0, family="ours"):
    return {"impl": impl, "framework": framework, "family": family, "median_s": median, "iqr_s": iqr}


def test_recommendation_calls_a_tie_within_the_noise():
    clear = markdown.pick([_row("a", "torch", 1.0, 0.01), _row("b", "torch", 1.5, 0.01),
                            _row("floor", "torch", 0.1, family="floor")], "torch")
    assert clear["best"]["impl"] == "a" and not clear["tied"] and clear["margin"] == pytest.approx(1.5)
    within_iqr = markdown.pick([_row("a", "jax", 1.0, 0.4), _row("b", "jax", 1.3, 0.3)], "jax")
    assert [m["impl"] for m in within_iqr["tied"]] == ["b"]
    within_tie = markdown.pick([_row("a", "jax", 1.0), _row("b", "jax", 1.04)], "jax")
    assert [m["impl"] for m in within_tie["tied"]] == ["b"]
    assert markdown.pick([_row("a", "jax", 1.0)], "torch") is None
    cells = markdown._cells(within_iqr)
    assert cells[0].startswith("tie: a") and "within noise" in cells[1]
    assert markdown._cells(clear) == ["**a** 1,000,000", "1.50x over b"]


def test_speedups_below_one_say_slower():
    from bench.timing.reporting.fmt import fmt_x

    assert fmt_x(0.73) == "0.73x (slower)" and fmt_x(1.0) == "1.00x" and fmt_x(2.5) == "2.50x" and fmt_x(None) == ""


def test_freshness_lists_the_implementation_files_changed_since_the_measured_commit():
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert freshness.changed_since(head.stdout.strip()) == []
    assert freshness.changed_since("0" * 40) is None
    first = subprocess.run(["git", "-C", str(ROOT), "rev-list", "--max-parents=0", "HEAD"],
                           capture_output=True, text=True).stdout.split()[0]
    changed = freshness.changed_since(first)
    assert changed and all(name.startswith(("impl_torch/", "impl_jax/")) for name in changed)
    md = "\n".join(freshness.freshness({"machine_info": {"adaptbench": {"git": {"commit": first, "dirty": False}}}}))
    assert "changed since" in md and all(f"`{name}`" in md for name in changed)
    assert "records no commit" in "\n".join(freshness.freshness({}))


def test_one_thread_setting_keeps_every_xla_flag(tmp_path):
    """XLA stops parsing XLA_FLAGS at a token without "--"; a user's flags must still apply."""
    pytest.importorskip("jax")
    code = ("from bench import threads\n"
            "threads.configure_threads('1')\n"
            "import os, jax\n"
            "print(os.environ['XLA_FLAGS'])\n"
            "print(jax.device_count())\n")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flags, count = proc.stdout.split("\n")[-3:-1]
    assert flags.split()[-1] == "intra_op_parallelism_threads=1"
    assert count == "4"


def _synthetic_step(rule, size, n, impl, median_s, tag="t1", **extra) -> dict:
    family = "ours" if impl.startswith("ours") else "peer"
    return {
        "name": f"test_step[{rule}-{size}-fp32-cpu-{impl}-{tag}]", "group": f"{rule}-{size}-fp32-cpu-{tag}",
        "stats": {"median": median_s, "iqr": median_s / 10, "rounds": 9},
        "extra_info": {"adaptbench": 1, "kind": "step", "rule": rule, "size": size, "n": n, "n_tensors": 1,
                       "dtype": "fp32", "device": "cpu", "impl": impl, "framework": "torch", "family": family,
                       "bytes_per_step": 20 * n, "thread_setting": "1", "threads": 1, "cpu_budget": 1,
                       "thread_tag": tag, **extra},
    }


def test_call_overhead_column_and_section(tmp_path):
    """A synthetic run: fused rows with a measured overhead, an auto row that ran no kernel,
    a row whose measurement failed, and rows that never had one."""
    measured = dict(overhead_step_s=32e-6, kernel_s=3e-6, overhead_s=29e-6, kernel_calls=1,
                    overhead_source="step median less the kernels'")
    big = dict(overhead_step_s=0.0101, kernel_s=0.0102, overhead_s=-0.0001, kernel_calls=1, overhead_source="x")
    data = {
        "machine_info": {}, "datetime": "2026-01-01T00:00:00",
        "benchmarks": [
            _synthetic_step("adagrad", "1e3", 1000, "ours-torch-fused", 30e-6, **measured),
            _synthetic_step("adagrad", "1e3", 1000, "ours-torch-auto", 20e-6,
                            overhead_source="not measured: no kernel ran (auto picked an eager impl at this size)"),
            _synthetic_step("adagrad", "1e3", 1000, "torch.optim-fused", 40e-6,
                            overhead_error="the measuring process exited"),
            _synthetic_step("adagrad", "1e3", 1000, "torch.optim-loop", 25e-6),
            _synthetic_step("adagrad", "1e7", 10_000_000, "ours-torch-fused", 0.0105, **big),
        ],
    }
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, data)), "--out", str(out)])
    md = _unpad((out / "README.md").read_text())
    section = md.split("## Call overhead of the fused steps")[1].split("\n## ")[0]
    assert "bench/timing/overhead.py" in section  # where the method is told
    assert ("| cpu | fp32 | 1 (pinned) | adagrad | 1e3 | ours-torch-fused | 30.0 | 32.0 | 3.00 | 1 | 29.0 | 91% |"
            in section)
    assert "| adagrad | 1e7 | ours-torch-fused | 10,500 | 10,100 | 10,200 | 1 | -100 | -1% |" in section
    rows_md = section.split("| device |")[1].split("Not measured")[0]
    assert "ours-torch-auto" not in rows_md and "torch.optim" not in rows_md
    assert "adagrad-1e3-fp32-cpu-t1 `torch.optim-fused`: the measuring process exited" in section
    # the per-rule table of all numbers has the column; empty where nothing was measured
    numbers = md.split("### adagrad: cpu, fp32, threads 1 (pinned)")[1].split("</details>")[0]
    assert "| temp memory | call overhead us |" in numbers
    assert "| 1e3 | ours-torch-fused |" in numbers and numbers.split("| 1e3 | ours-torch-fused |")[1].split("\n")[0] \
        .rstrip().endswith("| 29.0 |")
    assert numbers.split("| 1e3 | torch.optim-loop |")[1].split("\n")[0].rstrip().endswith("|  |")
    rows = {(r["size"], r["impl"]): r for r in _csv(out / "results.csv")}
    fused = rows[("1e3", "ours-torch-fused")]
    assert float(fused["kernel_us"]) == pytest.approx(3.0) and float(fused["overhead_us"]) == pytest.approx(29.0)
    assert float(fused["overhead_step_us"]) == pytest.approx(32.0) and fused["kernel_calls"] == "1"
    assert rows[("1e3", "ours-torch-auto")]["overhead_source"].startswith("not measured")
    assert rows[("1e3", "torch.optim-fused")]["overhead_error"] == "the measuring process exited"
    assert rows[("1e3", "torch.optim-loop")]["kernel_us"] == rows[("1e3", "torch.optim-loop")]["overhead_us"] == ""


def test_no_overhead_section_without_fused_rows(tmp_path):
    data = {"machine_info": {}, "benchmarks": [_synthetic_step("adagrad", "1e3", 1000, "torch.optim-loop", 25e-6)]}
    out = tmp_path / "out"
    _run(["--json", str(_write(tmp_path, data)), "--out", str(out)])
    assert "Call overhead of the fused steps" not in (out / "README.md").read_text()
