"""The thread setting a benchmark process runs under (``ADAPTBENCH_THREADS``).

``default`` is the machine's default (every usable CPU, the frameworks' own thread counts);
N pins the process to N CPUs and sets torch's and XLA's thread counts to N.
docs/performance.md, "Thread settings and CPU budgets", says what each setting does and why.
``bench/machine.py`` records the applied setting with the machine facts.
"""

from __future__ import annotations

import os
import sys

import psutil

DEFAULT_SETTING = "default"

# What configure_threads() did, for every benchmark and machine.collect() to record.
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


def applied() -> dict:
    """What ``configure_threads()`` did in this process ({} before it ran)."""
    return dict(_thread_setup)
