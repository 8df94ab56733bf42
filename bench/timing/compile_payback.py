"""When does the fused step's first-step compile pay for itself? The measurement behind
``impl_torch.functional.AUTO_FUSED_MIN_NUMEL``.

``python -m bench.timing.compile_payback [--sizes 18 20 22] [--steps 60]`` prints two
Markdown tables. The first: per registered rule, the first ``impl="fused"`` step (the compile, with Inductor's
cache cold: a new ``TORCHINDUCTOR_CACHE_DIR``; and warm: a second process on the same
directory), then per size the median step of ``impl="loop"`` (torch.optim's
``foreach=False``, what ``auto`` runs below the threshold) and of ``impl="fused"`` in µs,
and how many steps the saving takes to repay the warm and the cold compile. fp32, one
contiguous tensor, torch.optim's defaults, the machine's default thread count. Each
(rule, cache state) runs in a process of its own, since compiled kernels stay in memory.
The second: the first step of ``COUNT_RULE`` (the measurement's definition: RMSprop
with momentum 0.9, whose step keeps two state tensors) on models of 10, 200 and 10,000
tensors, by the default and by ``impl="fused"``, each in a fresh process on a warm cache,
against torch.optim's first step: how long it takes and how many graphs it compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from adaptbench import rules

_CHILD = r"""
import json, statistics, sys, time, torch, impl_torch
name, sizes, steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3])
cls = impl_torch.optimizer_class(name)
out = {"threads": torch.get_num_threads(), "sizes": {}}
for k, n in enumerate(sizes):
    row = {}
    for impl in ("fused", "loop"):
        p = torch.nn.Parameter(torch.randn(n)); p.grad = torch.randn(n)
        opt = cls([p], impl=impl)
        t0 = time.perf_counter(); opt.step(); first = time.perf_counter() - t0
        if impl == "fused" and k == 0:
            out["first_step_s"] = first
        opt.step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter(); opt.step(); times.append(time.perf_counter() - t0)
        row[impl] = statistics.median(times) * 1e6
    out["sizes"][n] = row
print(json.dumps(out))
"""


_COUNT_CHILD = r"""
import json, sys, time, torch, impl_torch
from adaptbench import rules
from impl_torch import fused
from bench.timing.torch_cases import torch_optim
count, numel, impl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rule = rules.preset(sys.argv[4], "torch", **json.loads(sys.argv[5]))
ps = [torch.nn.Parameter(torch.randn(numel)) for _ in range(count)]
for p in ps:
    p.grad = torch.randn(numel)
if impl == "torch.optim":
    cls, kwargs = torch_optim(rule)
    opt = cls(ps, **kwargs)
else:
    opt = impl_torch.optimizer_for(rule, ps, impl=None if impl == "auto" else impl)
t0 = time.perf_counter(); opt.step(); first = time.perf_counter() - t0
t0 = time.perf_counter(); opt.step(); second = time.perf_counter() - t0
print(json.dumps({"first_s": first, "second_s": second,
                  "graphs": fused._COMPILES[0] if impl != "torch.optim" else 0}))
"""

#: The rule and torch-convention overrides of the second table (docs/performance.md cites it).
COUNT_RULE = ("rmsprop", {"momentum": 0.9})
#: (tensors, elements each): the issue's many-small-tensor models, and large ones that
#: the default fuses.
COUNT_CASES = ((10, 512), (200, 512), (10_000, 8), (10, 1 << 17), (200, 1 << 16))


def _count_child(count: int, numel: int, impl: str, cache: str, timeout_s: float) -> dict | None:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    try:
        rule, overrides = COUNT_RULE
        run = subprocess.run([sys.executable, "-c", _COUNT_CHILD, str(count), str(numel), impl, rule,
                              json.dumps(overrides)],
                             env=env, capture_output=True, text=True, check=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def _child(name: str, sizes: list[int], steps: int, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, "-c", _CHILD, name, ",".join(map(str, sizes)), str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[18, 20, 22], help="log2 of the sizes")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per impl and size")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per first-step process")
    args = parser.parse_args(argv)
    sizes = [1 << s for s in args.sizes]
    print(f"Made by `python -m bench.timing.compile_payback --sizes {' '.join(map(str, args.sizes))} "
          f"--steps {args.steps}` on {time.strftime('%Y-%m-%d')}.\n")
    print("| rule | compile cold, s | compile warm, s | elements | loop µs | fused µs | saving µs "
          "| steps to repay warm | steps to repay cold |")
    print("|---|---|---|---|---|---|---|---|---|")
    threads = None
    for name in rules.RULES:
        with tempfile.TemporaryDirectory(prefix="compile_payback_") as cache:
            cold = _child(name, sizes, args.steps, cache)
            warm = _child(name, sizes, args.steps, cache)
        threads = warm["threads"]
        for n in sizes:
            loop = statistics.median([cold["sizes"][str(n)]["loop"], warm["sizes"][str(n)]["loop"]])
            fused = statistics.median([cold["sizes"][str(n)]["fused"], warm["sizes"][str(n)]["fused"]])
            saving = loop - fused
            repay = (lambda s: f"{s / (saving * 1e-6):,.0f}") if saving > 0 else (lambda s: "never")
            print(f"| {name} | {cold['first_step_s']:.2f} | {warm['first_step_s']:.2f} | 2^{n.bit_length() - 1} "
                  f"| {loop:,.0f} | {fused:,.0f} | {saving:,.0f} | {repay(warm['first_step_s'])} "
                  f"| {repay(cold['first_step_s'])} |")
    print(f"\nfp32, one tensor, torch.optim's defaults, {threads} threads (the default here); "
          "µs are medians of the cold and warm processes' medians.\n")
    print("| model | impl | first step, s | graphs compiled | second step, ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="compile_payback_") as cache:
        for count, numel in COUNT_CASES:
            for impl in ("torch.optim", "auto", "fused"):
                _count_child(count, numel, impl, cache, args.timeout)  # warms the cache
                out = _count_child(count, numel, impl, cache, args.timeout)
                cells = (["> %d s" % args.timeout, "?", "?"] if out is None else
                         [f"{out['first_s']:.2f}", str(out["graphs"]), f"{out['second_s'] * 1e3:.1f}"])
                print(f"| {count:,} x {numel:,} | {impl} | " + " | ".join(cells) + " |")
    print(f"\n{COUNT_RULE[0]}, torch.optim's defaults but {COUNT_RULE[1]}, fp32; each row a fresh process on "
          "an Inductor cache warmed by the same model's run just before.")


if __name__ == "__main__":
    main()
