"""``python -m bench train``: the tutorial's experiment in PyTorch and JAX.

One run (both frameworks from the same data, initial weights and batch order)::

    python -m bench train --dataset iris --rule rmsprop --framework both --epochs 50 \\
        [--model linear|mlp] [--batch-size 24] [--dtype float32|float64] [--seed 0] [--lr LR]

prints the final metrics per framework and how far their loss curves drifted apart
(``--json PATH`` also writes the curves). The sweep::

    python -m bench train --sweep [--out results/training] [--dataset NAME ...] [--epochs N]

trains every data set × model × rule × framework and writes ``training.md``, one
``loss_<dataset>.png`` per data set and ``histories.json`` (see ``bench/training/train_sweep.py``).
Progress goes to stderr. Both frameworks get the same intra-op thread count
(``bench.threads.configure_threads``: the machine's default, or ``ADAPTBENCH_THREADS``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets

from . import train_rules
from .models import DEFAULT_HIDDEN, MODELS

FRAMEWORK_CHOICES = ("torch", "jax", "both")


def _number(convert, what: str, ok):
    """An argparse type: ``convert(text)`` if ``ok(value)``, else a message naming ``what``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, "a positive integer", lambda v: v >= 1)
_nonnegative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
_positive_float = _number(float, "a positive number", lambda v: 0 < v < float("inf"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench train",
        description="Train the tutorial's models with identical runs in PyTorch and JAX.",
    )
    p.add_argument("--sweep", action="store_true",
                   help="run every data set x model x rule x framework and write --out")
    p.add_argument("--dataset", action="append", choices=datasets.NAMES,
                   help="data set (default iris; with --sweep: restrict the sweep, repeatable)")
    p.add_argument("--model", action="append", choices=MODELS,
                   help="model (default linear; with --sweep: restrict, repeatable)")
    p.add_argument("--rule", action="append", choices=train_rules.names(),
                   help="update rule (default rmsprop; with --sweep: restrict, repeatable)")
    p.add_argument("--framework", choices=FRAMEWORK_CHOICES, default="both")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default 50; with --sweep: per data set, see bench/training/train_sweep.py)")
    p.add_argument("--batch-size", type=_positive_int, default=24)
    p.add_argument("--dtype", choices=datasets.DTYPES, default="float32")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--hidden", type=_positive_int, default=DEFAULT_HIDDEN, help="mlp hidden units")
    p.add_argument("--lr", type=_positive_float, default=None, help="override the rule's learning rate")
    p.add_argument("--torch-impl", default=None, help="impl_torch implementation (default: its default)")
    p.add_argument("--out", type=Path, default=None, help="sweep output folder (default results/training)")
    p.add_argument("--json", type=Path, default=None, help="single run: write the curves here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _frameworks(choice: str) -> tuple[str, ...]:
    return ("torch", "jax") if choice == "both" else (choice,)


def _single(args, frameworks) -> int:
    from .progress import progress_bar
    from .train_runs import RunConfig, max_rel_diff, run

    for flag in ("dataset", "model", "rule"):
        if len(getattr(args, flag) or ()) > 1:
            raise SystemExit(f"python -m bench train: error: one --{flag} per run (or use --sweep)")
    config = RunConfig(
        dataset=(args.dataset or ["iris"])[0], model=(args.model or ["linear"])[0],
        rule=(args.rule or ["rmsprop"])[0], epochs=args.epochs or 50, batch_size=args.batch_size,
        dtype=args.dtype, seed=args.seed, hidden=args.hidden, lr=args.lr, torch_impl=args.torch_impl,
    )
    desc = f"{config.dataset}/{config.model}/{config.rule}"
    with progress_bar(config.epochs * len(frameworks), desc, enabled=not args.no_progress) as bar:
        hists = run(config, frameworks, progress=bar)
    print(f"{desc}: {config.epochs} epochs, batch {config.batch_size}, {config.dtype}, seed {config.seed}; "
          f"{train_rules.describe(config.rule, config.lr)}")
    print(f"{'framework':<10}{'train loss':>12}{'dev loss':>12}{'train acc':>11}{'dev acc':>9}"
          f"{'test acc':>10}{'ms/epoch':>10}")
    for fw, h in hists.items():
        print(f"{fw:<10}{h.train_loss[-1]:>12.6f}{h.dev_loss[-1]:>12.6f}{h.train_acc[-1]:>11.3f}"
              f"{h.dev_acc[-1]:>9.3f}{h.test_acc:>10.3f}{h.time_per_epoch * 1e3:>10.3f}")
    if len(hists) == 2:
        t, j = hists["torch"], hists["jax"]
        print(f"loss curves, max relative difference torch vs jax: train "
              f"{max_rel_diff(t.train_loss, j.train_loss):.2e}, dev {max_rel_diff(t.dev_loss, j.dev_loss):.2e}")
    if args.json is not None:
        from .train_sweep import write_atomic

        write_atomic(args.json, json.dumps({fw: h.as_dict() for fw, h in hists.items()}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _sweep(args, frameworks, argv) -> int:
    from . import train_sweep

    if args.json is not None:
        raise SystemExit("python -m bench train: error: --json is for single runs; the sweep writes histories.json")
    out = args.out or train_sweep.DEFAULT_OUT
    t0 = time.perf_counter()
    written = train_sweep.sweep(
        out,
        command=" ".join(["python -m bench train", *argv]),
        frameworks=frameworks,
        show_progress=not args.no_progress,
        datasets_=tuple(args.dataset) if args.dataset else None,
        models=tuple(args.model) if args.model else MODELS,
        rules_=tuple(args.rule) if args.rule else None,
        epochs=args.epochs,
        batch_size=args.batch_size, dtype=args.dtype, seed=args.seed, hidden=args.hidden, lr=args.lr,
        torch_impl=args.torch_impl,
    )
    for path in written:
        print(f"wrote {path}")
    print(f"sweep took {time.perf_counter() - t0:.0f} s")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.out is not None and not args.sweep:
        parser().error("--out is for --sweep")
    from bench import threads

    threads.configure_threads()  # before any jax array exists: same thread count for both
    if args.torch_impl is not None:
        import impl_torch

        if args.torch_impl not in impl_torch.IMPLS:
            parser().error(f"--torch-impl must be one of {impl_torch.IMPLS}, got {args.torch_impl!r}")
    frameworks = _frameworks(args.framework)
    if args.sweep:
        return _sweep(args, frameworks, argv)
    return _single(args, frameworks)


if __name__ == "__main__":
    sys.exit(main())
