"""Call overhead of the compiled steps: median step time less the median time of its kernels.

A step of ``impl="fused"`` (and of ``impl="auto"`` where auto picks fused) runs one
Inductor-generated C++ kernel per tensor, or one call of a generated wrapper over many
tensors; torch.optim's ``fused=True`` runs its native ``aten::_fused_<rule>_`` kernel.
What the step costs beyond those kernels (Python, the optimizer's bookkeeping, the compiled
call's wrappers) is its overhead:

    overhead = median time of ``Optimizer.step()`` - median time of the kernels one step runs

Both medians come from one process, made for this measurement, beside the sweep:

- Inductor's C++ kernels carry a ``RECORD_FUNCTION`` range (named ``graph_<n>_cpp_...``)
  only when compiled with ``torch._inductor.config.cpp.enable_kernel_profile`` on, which
  changes the generated code. So the sweep's own process never turns it on: one worker
  process per pytest session (``Worker``), started at the first case that needs it, with
  the same thread setting (``bench.threads.configure_threads``, so pinned to the same CPUs),
  turns it on before anything compiles, builds the same case as the sweep
  (``torch_cases.build``: same tensors, optimizer and warm-up) and measures it
  (``measure``). Its compiled steps are reused from case to case, as in the sweep.
- ``measure`` times the step with ``timeit`` (rounds of at least ``MIN_ROUND_S``, as the
  sweep's pytest-benchmark rounds, gc off) without the profiler, and runs as many steps
  again under ``torch.profiler``, each inside a ``record_function`` range, summing per step
  the wall time of the kernel ranges inside it (on the calling thread: an OpenMP kernel's
  range spans its parallel region). Timed rounds and profiled steps alternate in
  ``BLOCKS``. Step time: the median of the rounds; kernel time: the median of the sums.

The timed steps run with the kernel ranges compiled in, so step and kernel times are of the
same code; when no profiler records, a range costs next to nothing (iris15 Adagrad, one
thread: the fastest of 100 rounds ~50 us with and without them). Measured on CPU
only (a CUDA kernel's time is device time, which overlaps the next call's overhead), at
``SIZES``, outside the sweep's timed loop; ``for_case`` returns what the benchmark's
``extra_info`` records.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import timeit
from typing import Callable

from bench import machine, threads

from . import cases

#: The sizes measured (not tfm100: the worker would compile its 100-tensor graph again,
#: tens of seconds, for a row whose overhead iris15 and 1e3 already show).
SIZES = ("iris15", "1e3", "1e5", "1e6", "1e7")
STEP_RANGE = "adaptbench::overhead_step"
MIN_ROUND_S = 0.0005  # pyproject.toml's --benchmark-min-time
MIN_ROUNDS = 8  # timed rounds, and profiled steps, per case
MAX_ROUNDS = 48
TIME_BUDGET_S = 0.25  # for the timed rounds of one case, and again for its profiled steps
BLOCKS = 4
REQUEST_TIMEOUT_S = 600.0  # the first case of a rule compiles


def _inductor_kernel(name: str) -> bool:
    # Inductor names each C++ kernel's RECORD_FUNCTION range graph_<n>_<kernel name>.
    return name.startswith("graph_") and "_cpp_" in name


def _native_fused_kernel(name: str) -> bool:
    return name.startswith("aten::_fused_")


#: Impl id -> which profiler ranges are its kernels.
KERNELS: dict[str, Callable[[str], bool]] = {
    "ours-torch-fused": _inductor_kernel,
    "ours-torch-auto": _inductor_kernel,  # only where auto picks fused: no kernel ranges elsewhere
    "torch.optim-fused": _native_fused_kernel,
}
KERNEL_DESCRIPTION = {
    "ours-torch-fused": "Inductor C++ kernels (RECORD_FUNCTION ranges, cpp.enable_kernel_profile)",
    "ours-torch-auto": "Inductor C++ kernels (RECORD_FUNCTION ranges, cpp.enable_kernel_profile)",
    "torch.optim-fused": "the native aten::_fused_* kernel op",
}


def applies(spec: cases.StepSpec) -> bool:
    """Whether the sweep measures ``spec``'s call overhead."""
    return (spec.device == "cpu" and spec.impl.id in KERNELS and spec.size.id in SIZES
            and not cases.quick_sweep())


def _descendants(event):
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


def _share(total: int, block: int) -> int:
    return total // BLOCKS + (block < total % BLOCKS)


def measure(step: Callable[[], object], is_kernel: Callable[[str], bool]) -> dict:
    """Median step time, median kernel time per step and their difference, in seconds.

    ``step`` is warmed up already. ``kernel_calls`` is the median number of kernel ranges
    per step; 0 (with ``kernel_s`` 0) when the step ran no kernel ``is_kernel`` names."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    one = max(timeit.timeit(step, number=1), 1e-9)
    number = max(1, math.ceil(MIN_ROUND_S / one))
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(TIME_BUDGET_S / (number * one))))
    profiled = max(MIN_ROUNDS, min(MAX_ROUNDS, int(TIME_BUDGET_S / one)))
    timer = timeit.Timer(step)  # gc off while timing, as the sweep's --benchmark-disable-gc
    times, kernel_us, calls = [], [], []
    # Timed rounds and profiled steps alternate in BLOCKS, so that a drift of the machine's
    # load moves both medians alike.
    for block in range(BLOCKS):
        times += [timer.timeit(number) / number for _ in range(_share(rounds, block))]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(_share(profiled, block)):
                with record_function(STEP_RANGE):
                    step()
        for event in prof.events():
            if event.name == STEP_RANGE:
                kernels = [e for e in _descendants(event) if is_kernel(e.name)]
                kernel_us.append(sum(e.time_range.elapsed_us() for e in kernels))
                calls.append(len(kernels))
    if len(kernel_us) != profiled:
        raise RuntimeError(f"torch.profiler recorded {len(kernel_us)} of {profiled} step ranges "
                           f"(torch {torch.__version__})")
    step_s = statistics.median(times)
    kernel_s = statistics.median(kernel_us) * 1e-6
    return {"step_s": step_s, "kernel_s": kernel_s, "overhead_s": step_s - kernel_s,
            "kernel_calls": statistics.median_low(calls), "rounds": rounds, "iterations": number,
            "profiled_steps": profiled}


def measure_case(spec: cases.StepSpec) -> dict:
    """``measure`` on the sweep's own case for ``spec`` (in the worker process)."""
    from . import torch_cases

    case = torch_cases.build(spec)
    result = measure(case.fn, KERNELS[spec.impl.id])
    del case
    if not result["kernel_calls"]:
        return {"none": "no kernel ran (auto picked an eager impl at this size)"}
    return {"ok": result}


class Worker:
    """The measuring process of this pytest session: one request (a step spec) at a time;
    a worker that fails to answer is not asked again."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._dead: str | None = None

    def _start(self) -> None:
        self._log = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.timing.overhead"], cwd=machine.REPO_ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
        )
        atexit.register(self.close)

    def _fail(self, why: str) -> dict:
        log = ""
        if self._log is not None:
            self._log.seek(0)
            log = self._log.read()[-600:].strip().replace("\n", " | ")
        self._dead = why + (f"; its stderr ends: {log}" if log else "")
        self.close()
        return {"error": self._dead}

    def request(self, spec: cases.StepSpec) -> dict:
        """``{"ok": measure's result}``, ``{"none": why}`` when the case has no kernel to
        measure, or ``{"error": what failed}``."""
        if self._dead is not None:
            return {"error": f"the measuring process failed earlier: {self._dead}"}
        if self._proc is None:
            self._start()
        message = {"rule": spec.rule, "size": spec.size.id, "dtype": spec.dtype, "device": spec.device,
                   "impl": spec.impl.id}
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError as exc:
            return self._fail(f"the measuring process does not take requests ({exc})")
        ready, _, _ = select.select([self._proc.stdout], [], [], REQUEST_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            return self._fail("the measuring process " + ("exited" if ready else
                                                          f"did not answer in {REQUEST_TIMEOUT_S:.0f} s"))
        return json.loads(line)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


_worker = Worker()


def for_case(spec: cases.StepSpec) -> dict:
    """What a step benchmark's ``extra_info`` records: ``overhead_step_s``, ``kernel_s``,
    ``overhead_s``, ``kernel_calls`` and ``overhead_source`` (how it was measured); only
    ``overhead_source`` (why there is nothing to measure) for a step that ran no kernel;
    only ``overhead_error`` when the measurement failed."""
    answer = _worker.request(spec)
    result = answer.get("ok")
    if "none" in answer:
        return {"overhead_source": f"not measured: {answer['none']}"}
    if result is None:
        return {"overhead_error": answer.get("error", "no answer")}
    return {
        "overhead_step_s": result["step_s"], "kernel_s": result["kernel_s"], "overhead_s": result["overhead_s"],
        "kernel_calls": result["kernel_calls"],
        "overhead_source": (f"step median ({result['rounds']} rounds of {result['iterations']}) less the median "
                            f"per-step time of {KERNEL_DESCRIPTION[spec.impl.id]} over {result['profiled_steps']} "
                            f"profiled steps, in a process of its own"),
    }


def _serve() -> int:
    """The worker: one JSON request per line on stdin, one JSON answer per line."""
    import pytest

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed (torch, compilers) goes to the log, not the answers
    threads.configure_threads()
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True
    impls = {i.id: i for i in cases.impls()}
    skipped = pytest.skip.Exception
    for line in sys.stdin:
        request = json.loads(line)
        try:
            spec = cases.StepSpec(request["rule"], cases.SIZE_BY_ID[request["size"]], request["dtype"],
                                  request["device"], impls[request["impl"]])
            answer = measure_case(spec)
        except skipped as exc:  # a case the sweep skips too (unsupported here)
            answer = {"none": str(exc).splitlines()[0] if str(exc) else "skipped"}
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            answer = {"error": f"{type(exc).__name__}: {text}"}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())
