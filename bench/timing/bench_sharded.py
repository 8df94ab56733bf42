"""The "sharded" family: one optimizer step with parameters and state sharded by the
frameworks' own engines (run with ``pytest bench --benchmark-only -k sharded``).

- JAX SPMD, ``impl_jax.make_step`` and the optax peer on one fp32 parameter sharded over a
  1-D ``Mesh`` of 1, 2, 4 and 8 devices: 1e7 elements in all (strong scaling) and 1e6
  elements per device (weak scaling).
- torch FSDP2 (``fully_shard``) on 2 gloo ranks, 1e7 fp32 elements in all: every
  ``impl_torch`` impl against torch.optim (``foreach=False``/``True``) on the same shards.

Ids read ``sharded-<framework>-<rule>-<scaling>-<n>-<d>dev-<impl>``; groups
``sharded-<framework>-<rule>-<scaling>`` (``-k "sharded and jax and strong"`` selects).

Every device count runs in its own server process (``bench/timing/sharded_worker.py``):
JAX fixes its host device count (``--xla_force_host_platform_device_count``) when it
starts, and each gloo rank is a process. The ``benchmark`` fixture here calls the server
once per step over a pipe, so pytest-benchmark's round settings apply; the server times
the step itself (JAX: to ``block_until_ready``; torch: rank 0 between barriers) and the
median of those in-server times, without the pipe's latency, is ``extra_info["median_s"]``
(the pipe round trip is in the fixture's own stats). The roofline is an in-place
``a + b`` with the step's per-device working set, sharded the same way, timed in the same
server (``probe_gbps``); bytes are reported in all and per device. Servers inherit the
session's thread setting (CPU affinity, ``XLA_FLAGS``); each torch rank takes an equal
part of the CPUs, at least one thread.

On a CPU, host devices and gloo ranks share the machine's cores: these figures measure
what sharding *adds* over one device at the same total (partitioning, per-device
dispatch, barriers), not a speed-up. On a multi-GPU machine the same command puts the
mesh on the GPUs (up to as many as there are; larger counts are skipped).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench import peers
from bench.timing import cases

SCHEMA = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
JAX_DEVICE_COUNTS = (1, 2, 4, 8)
STRONG_N = 10_000_000
WEAK_N_PER_DEVICE = 1_000_000
TORCH_RANKS = 2
TORCH_N = 10_000_000
JAX_IMPLS = {"ours-jax-step": "make_step", "optax": "optax"}
TORCH_IMPLS = (
    "ours-torch-auto", "ours-torch-loop", "ours-torch-foreach", "ours-torch-fused",
    "torch.optim-loop", "torch.optim-foreach",
)
PROBE_CALLS = 15


def _n_id(n: int) -> str:
    """``1e7``, ``8e6``: one significant digit as the sweep's size ids write it."""
    digits = str(n)
    lead = digits.rstrip("0")
    return f"{lead}e{len(digits) - 1}" if len(lead) == 1 else digits


@dataclasses.dataclass(frozen=True)
class ShardedSpec:
    framework: str  # "jax" | "torch"
    scaling: str  # "strong" | "weak" (jax), "fsdp" (torch)
    rule: str
    devices: int
    n: int  # elements in all
    impl: str

    @property
    def id(self) -> str:
        return f"sharded-{self.framework}-{self.rule}-{self.scaling}-{_n_id(self.n)}-{self.devices}dev-{self.impl}"

    @property
    def group(self) -> str:
        return f"sharded-{self.framework}-{self.rule}-{self.scaling}"

    @property
    def server_key(self) -> tuple:
        return (self.framework, self.devices)


def specs() -> list[ShardedSpec]:
    """JAX cases device count first (one server each, used while it is current), then torch."""
    out = [
        ShardedSpec("jax", scaling, rule, d, STRONG_N if scaling == "strong" else WEAK_N_PER_DEVICE * d, impl)
        for d in JAX_DEVICE_COUNTS
        for scaling in ("strong", "weak")
        for rule in cases.rule_names()
        for impl in JAX_IMPLS
        if impl != "optax" or peers.has_peer(cases.rule_for(rule), "optax")
    ]
    out += [
        ShardedSpec("torch", "fsdp", rule, TORCH_RANKS, TORCH_N, impl)
        for rule in cases.rule_names()
        for impl in TORCH_IMPLS
        if not impl.startswith("torch.optim-") or peers.has_peer(cases.rule_for(rule), "torch")
    ]
    return out


SPECS = specs()


class Server:
    """Processes running ``bench/timing/sharded_worker.py``; commands go to the first."""

    def __init__(self, framework: str, devices: int):
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory(prefix="adaptbench-sharded-")
        env = dict(os.environ)
        worker = [sys.executable, "-m", "bench.timing.sharded_worker"]
        if framework == "jax":
            flags = [f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
            # first: XLA stops reading XLA_FLAGS at a token it does not parse as a flag
            env["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={devices}"] + flags)
            argvs = [worker + ["jax"]]
        else:
            init = str(Path(self.tmp.name) / "rendezvous")
            argvs = [worker + ["torch", str(rank), str(devices), init] for rank in range(devices)]
        for rank, argv in enumerate(argvs):
            self.procs.append(subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, text=True, bufsize=1,
                stdin=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
                stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
            ))
        self.devices = self._read()["devices"]
        self.times: list[float] = []

    def _read(self):
        line = self.procs[0].stdout.readline()
        if not line:
            codes = [p.poll() for p in self.procs]
            raise RuntimeError(f"sharded worker exited (return codes {codes}); see its stderr above")
        return json.loads(line)

    def ask(self, command: str):
        self.procs[0].stdin.write(command + "\n")
        out = self._read()
        if isinstance(out, dict) and "error" in out:
            raise RuntimeError(out["error"])
        return out

    def step(self) -> None:
        self.times.append(self.ask("step"))

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None and p.stdin:
                try:
                    p.stdin.write("quit\n")
                    p.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def servers():
    """The current server, started on first use; one per (framework, device count) at a
    time, so that idle JAX processes do not hold their arrays."""
    pool: dict[tuple, Server] = {}

    def get(spec: ShardedSpec) -> Server:
        if spec.server_key not in pool:
            for server in pool.values():
                server.close()
            pool.clear()
            pool[spec.server_key] = Server(spec.framework, spec.devices)
        return pool[spec.server_key]

    yield get
    for server in pool.values():
        server.close()


@pytest.mark.parametrize("case", SPECS, ids=[s.id for s in SPECS])
def test_sharded_step(benchmark, servers, case: ShardedSpec):
    if case.framework == "torch":
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_gloo_available():
            pytest.skip("torch.distributed with gloo is unavailable")
        if case.impl == "ours-torch-fused":
            from impl_torch import fused

            if fused.unavailable_reason():
                pytest.skip(f"impl='fused' unavailable: {fused.unavailable_reason()}")
    server = servers(case)
    if server.devices < case.devices:
        pytest.skip(f"{case.devices} devices wanted, the server has {server.devices}")
    rule = cases.rule_for(case.rule)
    impl = JAX_IMPLS.get(case.impl, case.impl)
    facts = server.ask("setup " + json.dumps({"rule": case.rule, "n": case.n, "devices": case.devices, "impl": impl}))
    probe_s = statistics.median(server.ask("probe") for _ in range(PROBE_CALLS))
    bytes_per_step = rule.accesses_per_element * cases.ITEMSIZE["fp32"] * case.n
    benchmark.group = case.group
    info = benchmark.extra_info
    info.update(
        adaptbench=SCHEMA, kind="sharded", family="sharded", framework=case.framework,
        scaling=case.scaling, rule=case.rule, impl=case.impl, devices=case.devices, n=case.n,
        n_per_device=case.n // case.devices, dtype="fp32", device=facts["platform"],
        bytes_per_step=bytes_per_step, bytes_per_device=bytes_per_step / case.devices,
        xla_flags=os.environ.get("XLA_FLAGS", ""), **{f"server_{k}": v for k, v in facts.items()},
    )
    server.times.clear()
    benchmark(server.step)
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(benchmark, "disabled", False):
        return
    calls = len(stats.stats.data) * stats.iterations
    median = statistics.median(server.times[-calls:])
    gbps = bytes_per_step / median / 1e9
    probe_gbps = facts["probe_bytes"] / probe_s / 1e9
    info.update(
        median_s=median, pipe_median_s=float(stats.stats.median), rounds=len(stats.stats.data),
        gbps=gbps, gbps_per_device=gbps / case.devices,
        probe_median_s=probe_s, probe_gbps=probe_gbps, probe_gbps_per_device=probe_gbps / case.devices,
        roofline_fraction=gbps / probe_gbps,
        # above 1 the probe under-measured (bench/timing/probe.py): flagged, never a result
        probe_error="step beat the probe" if gbps > probe_gbps else None,
    )
