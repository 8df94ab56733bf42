"""What machine a benchmark ran on, and the thread settings it ran under.

``collect()`` gathers what ``bench/conftest.py`` stores under ``machine_info["adaptbench"]``
in every pytest-benchmark JSON (and the training experiment in its histories): the CPU from
py-cpuinfo, cores and threads from psutil, thread pools from threadpoolctl, versions, git
and the frameworks; only the cache sizes are read from sysfs (see ``cpu_caches``).
``slug()`` names the ``results/<machine>/`` folder.

``configure_threads()`` applies a thread setting (``ADAPTBENCH_THREADS``: ``default``, or N
CPUs with the process pinned to them); docs/performance.md, "Thread settings and CPU budgets".
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SETTING = "default"
_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "XLA_", "JAX_", "TF_CPP_", "CUDA_VISIBLE", "ADAPTBENCH_")
_PACKAGES = ("torch", "jax", "jaxlib", "optax", "numpy", "pytest", "pytest-benchmark", "matplotlib", "pandas")

# What configure_threads() did, for collect() to record.
_thread_setup: dict = {}


def requested_setting(raw: str | None = None) -> str:
    """A thread setting, ``"default"`` or a positive integer as text, from ``raw`` or else
    ``ADAPTBENCH_THREADS`` (unset: ``"default"``)."""
    raw = (os.environ.get("ADAPTBENCH_THREADS", "") if raw is None else raw).strip().lower()
    if raw in ("", DEFAULT_SETTING):
        return DEFAULT_SETTING
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"ADAPTBENCH_THREADS must be 'default' or a positive integer, got {raw!r}")
    return str(int(raw))


def usable_cpus() -> list[int]:
    return sorted(psutil.Process().cpu_affinity())


def thread_tag(setting: str | None = None) -> str:
    """The suffix that keeps a setting's benchmark names apart in a merged JSON: ``t<CPU budget>``."""
    setting = requested_setting() if setting is None else setting
    budget = len(usable_cpus()) if setting == DEFAULT_SETTING else int(setting)
    return f"t{budget}"


def _jax_backend_initialised() -> bool | None:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # private API moved: unknown
        return None


def configure_threads(setting: str | None = None) -> dict:
    """Apply a thread setting (default ``requested_setting()``) to this process and return
    it; call it before any jax array or torch thread exists (docs/performance.md, "Thread
    settings and CPU budgets", says what each setting does and why)."""
    setting = requested_setting() if setting is None else str(setting)
    applied = not _jax_backend_initialised()
    if setting == DEFAULT_SETTING:
        cpus = usable_cpus()
    else:
        n = int(setting)
        cpus = usable_cpus()[:n]
        if len(cpus) < n:
            raise ValueError(f"ADAPTBENCH_THREADS={n}: only {len(cpus)} CPUs are usable")
        pin(cpus)
    import torch

    if setting != DEFAULT_SETTING:
        flags = os.environ.get("XLA_FLAGS", "").split()
        if not any("xla_cpu_multi_thread_eigen" in f for f in flags):
            flags.append(f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}")
        if not any("intra_op_parallelism_threads" in f for f in flags):
            flags.append(f"intra_op_parallelism_threads={n}")
        # XLA's parser stops at the first token without "--" (the JAX FAQ's
        # intra_op_parallelism_threads), so every "--" flag must come before it.
        flags.sort(key=lambda f: not f.startswith("--"))
        os.environ["XLA_FLAGS"] = " ".join(flags)
        torch.set_num_threads(n)
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1  # no compile worker pool of ours beside the timed steps
    _thread_setup.clear()
    _thread_setup.update(setting=setting, requested=None if setting == DEFAULT_SETTING else int(setting),
                         cpu_budget=len(cpus), affinity=cpus, tag=thread_tag(setting),
                         torch_threads=torch.get_num_threads(), xla_flags=os.environ.get("XLA_FLAGS", ""),
                         xla_flags_applied=applied, inductor_compile_threads=inductor_config.compile_threads)
    return dict(_thread_setup)


def pin(cpus) -> None:
    """Pin every thread of this process to ``cpus``: affinity is per thread on Linux, and a
    new thread inherits its creator's, so threads started earlier (an import's pool) are
    pinned here one by one, and every later one inherits the set."""
    for tid in (t.id for t in psutil.Process().threads()):
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):  # ended meanwhile
            pass


def threads_outside(cpus) -> int:
    """How many threads of this process may run outside ``cpus`` (0 when the pin holds)."""
    allowed = set(cpus)
    count = 0
    for tid in (t.id for t in psutil.Process().threads()):
        try:
            count += not os.sched_getaffinity(tid) <= allowed
        except (ProcessLookupError, PermissionError):
            pass
    return count


def thread_record() -> dict:
    """What every benchmark of this process records about its thread setting."""
    setup = _thread_setup
    record = {"thread_setting": setup.get("setting"), "threads": setup.get("torch_threads"),
              "cpu_budget": setup.get("cpu_budget"), "thread_tag": setup.get("tag")}
    if setup.get("setting") not in (None, DEFAULT_SETTING):
        record["threads_unpinned"] = threads_outside(setup["affinity"])
    return record


def cpu_caches() -> dict:
    """Cache sizes of cpu0 by level, in bytes per instance: {"L1d": ..., "L2": ..., "L3": ...}.

    Read from sysfs because py-cpuinfo's are lscpu's totals under shifted names here (its
    ``l3_cache_size`` is 1 MiB, the L2 of one core; the L3 is 32 MiB), and the report
    judges cache residency by the last level."""
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
        if kind != "Instruction" and size.rstrip("KMGkmg").isdigit():
            caches[f"L{level}" + ("d" if kind == "Data" else "")] = int(size.rstrip("KMGkmg")) * scale
    return caches


def cache_bytes(device: str) -> int | None:
    """The largest cache a step's working set can stay in: the GPU's L2 on CUDA, else the
    CPU's last level (the bound for ``cache_resident``)."""
    if device == "cuda":
        import torch

        return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)) or None
    caches = cpu_caches()
    return max(caches.values()) if caches else None


def git_info() -> dict:
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _frameworks() -> dict:
    out = {}
    try:
        import torch

        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        out["torch"] = {"num_threads": torch.get_num_threads(), "num_interop_threads": torch.get_num_interop_threads(),
                        "cuda_available": bool(gpus), "cuda_version": torch.version.cuda,
                        "gpus": [{"name": g.name, "memory_bytes": int(g.total_memory),
                                  "l2_cache_bytes": int(getattr(g, "L2_cache_size", 0)) or None,
                                  "capability": f"{g.major}.{g.minor}"} for g in gpus]}
    except Exception as exc:  # keep the JSON even if a framework is broken
        out["torch"] = {"error": repr(exc)}
    try:
        import jax

        out["jax"] = {"backend": jax.default_backend(), "x64": bool(jax.config.jax_enable_x64),
                      "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      "devices": [{"platform": d.platform, "kind": getattr(d, "device_kind", None)}
                                  for d in jax.devices()]}
    except Exception as exc:
        out["jax"] = {"error": repr(exc)}
    return out


def collect(cpu: dict | None = None) -> dict:
    """Everything a results file needs to say where and how it was measured. ``cpu`` is
    py-cpuinfo's record (pytest-benchmark's ``machine_info["cpu"]``; read here when absent)."""
    if cpu is None:
        import cpuinfo

        cpu = cpuinfo.get_cpu_info()
    from threadpoolctl import threadpool_info

    info = {
        "cpu_model": cpu.get("brand_raw") or platform.processor() or "unknown-cpu",
        "cores": {"logical": psutil.cpu_count() or 1, "usable": len(usable_cpus()),
                  "physical": psutil.cpu_count(logical=False) or psutil.cpu_count() or 1},
        "caches": cpu_caches(),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}},
        "git": git_info(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
        "threads": dict(_thread_setup) or {"requested": None, "note": "configure_threads() not called"},
        **_frameworks(),
        "threadpools": [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
                        for p in threadpool_info()],
    }
    gpus = [g["name"] for g in info["torch"].get("gpus", [])]
    info["gpus"] = gpus or [d["kind"] for d in info["jax"].get("devices", []) if d.get("platform") == "gpu"]
    return info


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _slugify(text: str) -> str:
    text = re.sub(r"\((?:R|TM)\)|\bCPU\b|\bProcessor\b|@.*$", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def slug(info: dict) -> str:
    """``results/`` folder name: the GPU's name when there is one, else CPU model and cores.

    e.g. ``gpu-nvidia-h100-80gb-hbm3`` or ``cpu-amd-epyc-2c``.
    """
    gpus = info.get("gpus") or []
    if gpus:
        return "gpu-" + _slugify(str(gpus[0])) + (f"-x{len(gpus)}" if len(gpus) > 1 else "")
    cores = (info.get("cores") or {}).get("usable") or (info.get("cores") or {}).get("logical") or 0
    return f"cpu-{_slugify(str(info.get('cpu_model') or 'unknown'))}-{cores}c"
