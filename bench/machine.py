"""What machine a benchmark ran on.

``collect()`` gathers what ``bench/conftest.py`` stores under ``machine_info["adaptbench"]``
in every pytest-benchmark JSON (and the training experiment in its histories): the CPU from
py-cpuinfo, cores from psutil, thread pools from threadpoolctl, the commit from
pytest-benchmark, versions, the frameworks and the thread setting (``bench/threads.py``);
only the cache sizes are read from sysfs (see ``cpu_caches``). ``slug()`` names the
``results/<machine>/`` folder.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
from pathlib import Path

import psutil

from bench import threads

REPO_ROOT = Path(__file__).resolve().parent.parent

_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "XLA_", "JAX_", "TF_CPP_", "CUDA_VISIBLE", "ADAPTBENCH_")
_PACKAGES = ("torch", "jax", "jaxlib", "optax", "numpy", "pytest", "pytest-benchmark", "matplotlib", "pandas",
             "scikit-learn")


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
    """The checkout's commit and whether tracked files changed (pytest-benchmark's ``commit_info``)."""
    from pytest_benchmark.utils import get_commit_info

    with contextlib.chdir(REPO_ROOT):
        info = get_commit_info()
    return {"commit": info["id"] if re.fullmatch(r"[0-9a-f]{40}", info["id"]) else None, "dirty": info["dirty"]}


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
        "cores": {"logical": psutil.cpu_count() or 1, "usable": len(threads.usable_cpus()),
                  "physical": psutil.cpu_count(logical=False) or psutil.cpu_count() or 1},
        "caches": cpu_caches(),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}},
        "git": git_info(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)},
        "threads": threads.applied() or {"requested": None, "note": "configure_threads() not called"},
        **_frameworks(),
        "threadpools": [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
                        for p in threadpool_info()],
    }
    gpus = [g["name"] for g in info["torch"].get("gpus", [])]
    info["gpus"] = gpus or [d["kind"] for d in info["jax"].get("devices", []) if d.get("platform") == "gpu"]
    return info


def fmt_bytes(n) -> str:
    """``n`` bytes as people read them: ``1.25 MiB``, ``32 KiB``, ``12 B`` (3 significant
    digits, binary units); ``""`` for None."""
    if n is None:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def describe(info: dict) -> list[str]:
    """Markdown list items for a report: the commit, the machine (CPU, cores, caches, GPUs)
    and the versions of ``collect()``'s record ``info``."""
    git, cores = info.get("git") or {}, info.get("cores") or {}
    caches = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in (info.get("caches") or {}).items())
    return [
        f"- commit: `{git.get('commit') or 'unknown'}`" + (" (working tree dirty)" if git.get("dirty") else ""),
        f"- machine: {info.get('cpu_model', 'unknown')}, {cores.get('physical', '?')} cores / "
        f"{cores.get('logical', '?')} threads ({cores.get('usable', '?')} usable), {caches}"
        + (f"; GPU: {', '.join(map(str, info['gpus']))}" if info.get("gpus") else "; no GPU"),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items() if v),
    ]


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
