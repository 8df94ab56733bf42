"""The training sweep: every data set × model × rule × framework, written to results/training/.

Outputs (each written atomically: a ``.tmp-*`` file in the same folder, then ``os.replace``):

- ``training.md``: how the sweep was made (command, commit, versions, machine, threads,
  settings, data preparation, models, hyperparameters, definitions), then one table
  row per data set × model × rule with the final train/dev loss and accuracy and the test
  accuracy in each framework, the median time per epoch in each, and the largest relative
  difference between the two frameworks' loss curves;
- ``loss_<dataset>.png``: per data set one figure, rows = models, one panel per rule,
  PyTorch (thick) and JAX (thin, dashed) train and dev loss curves overlaid;
- ``histories.json``: every curve, for re-plotting.
"""

from __future__ import annotations

import datetime
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

import datasets
from bench import machine
from bench.machine import REPO_ROOT
from bench.writer import atomic_write_bytes

from . import train_rules
from .models import LINEAR_INIT_STD, MODELS
from .progress import progress_bar
from .train_runs import FRAMEWORKS, History, RunConfig, max_rel_diff, run

# Epochs per data set for the default sweep, chosen so that the whole sweep (50 runs in
# each framework) takes about a minute and a half on a 2-core machine, steps per epoch at
# batch 24: iris 5, wine 6, breast_cancer 19, digits 60, sparse 67.
SWEEP_EPOCHS: dict[str, int] = {"iris": 100, "wine": 100, "breast_cancer": 40, "digits": 20, "sparse": 30}
DEFAULT_OUT = REPO_ROOT / "results" / "training"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (``bench.writer.atomic_write_bytes``), creating the folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def sweep_configs(datasets_=None, models=MODELS, rules_=None, epochs=None, **common):
    """The run configurations of a sweep, data set by data set."""
    names = datasets.NAMES if datasets_ is None else datasets_
    return [
        RunConfig(dataset=ds, model=m, rule=r, epochs=epochs or SWEEP_EPOCHS[ds], **common)
        for ds in names
        for m in models
        for r in (train_rules.names() if rules_ is None else rules_)
    ]


def run_sweep(configs, frameworks=FRAMEWORKS, show_progress=True) -> list[dict[str, History]]:
    total = sum(c.epochs for c in configs) * len(frameworks)
    results = []
    with progress_bar(total, "sweep", enabled=show_progress) as bar:
        for c in configs:
            bar.set_description(f"{c.dataset}/{c.model}/{c.rule}")
            results.append(run(c, frameworks, progress=bar))
    return results


# --------------------------------------------------------------------------- Markdown


def _fmt(x, digits=4):
    return "—" if x is None or (isinstance(x, float) and x != x) else f"{x:.{digits}f}"


def _pair(hists, getter, digits=4):
    return " / ".join(_fmt(getter(hists[fw]), digits) if fw in hists else "—" for fw in FRAMEWORKS)


def table(results: list[dict[str, History]]) -> str:
    head = (
        "| data set | model | rule | epochs | train loss | dev loss | train acc | dev acc | test acc "
        "| torch ms/epoch | JAX ms/epoch | torch/JAX time | max rel. loss diff |\n"
        "|---|---|---|---:|---|---|---|---|---|---:|---:|---:|---:|\n"
    )
    rows = []
    for hists in results:
        c = next(iter(hists.values())).config
        t = hists.get("torch")
        j = hists.get("jax")
        ms = {fw: h.time_per_epoch * 1e3 for fw, h in hists.items()}
        ratio = ms["torch"] / ms["jax"] if t and j and ms["jax"] > 0 else float("nan")
        diff = (
            max(max_rel_diff(t.train_loss, j.train_loss), max_rel_diff(t.dev_loss, j.dev_loss))
            if t and j else float("nan")
        )
        rows.append(
            f"| {c.dataset} | {c.model} | {c.rule} | {c.epochs} "
            f"| {_pair(hists, lambda h: h.train_loss[-1])} | {_pair(hists, lambda h: h.dev_loss[-1])} "
            f"| {_pair(hists, lambda h: h.train_acc[-1], 3)} | {_pair(hists, lambda h: h.dev_acc[-1], 3)} "
            f"| {_pair(hists, lambda h: h.test_acc, 3)} "
            f"| {_fmt(ms.get('torch'), 2)} | {_fmt(ms.get('jax'), 2)} | {_fmt(ratio, 1)}× | {diff:.1e} |"
        )
    return head + "\n".join(rows) + "\n"


def _threads_line(info: dict) -> str:
    threads, jax_info = info.get("threads") or {}, info.get("jax") or {}
    return (f"- threads: torch {(info.get('torch') or {}).get('num_threads')} intra-op; XLA_FLAGS "
            f"`{jax_info.get('xla_flags') or threads.get('xla_flags') or ''}` (`bench.threads.configure_threads`, "
            f"`ADAPTBENCH_THREADS` overrides); devices: torch CPU, JAX {jax_info.get('backend')}")


def markdown(results, *, command: str, elapsed_s: float, frameworks=FRAMEWORKS, info: dict | None = None) -> str:
    """training.md; ``info`` is ``machine.collect()``'s record (collected here when absent)."""
    info = machine.collect() if info is None else info
    configs = [next(iter(h.values())).config for h in results]
    c0 = configs[0]
    epochs = {}
    for c in configs:
        epochs.setdefault(c.dataset, c.epochs)
    rules_used = list(dict.fromkeys(c.rule for c in configs))
    sizes = {}
    for ds in epochs:
        s = datasets.load(ds, seed=c0.seed)
        sizes[ds] = (s.sizes, s.n_features, s.n_classes)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Training experiment: PyTorch vs JAX, same data, same weights, same batches",
        "",
        "Generated by `python -m bench train --sweep` (bench/training/train_sweep.py); do not edit by hand. "
        "How it was made:",
        "",
        f"- command: `{command}` ({now}; the {len(results)} runs took {elapsed_s:.0f} s)",
        *machine.describe(info),
        _threads_line(info),
        f"- frameworks: {', '.join(frameworks)}; dtype {c0.dtype}; batch size {c0.batch_size}; "
        f"seed {c0.seed}; epochs per data set: "
        + ", ".join(f"{ds} {n}" for ds, n in epochs.items()),
        "",
        "**Data** (`datasets.load(name, seed)`): shuffled with `np.random.default_rng(seed)`, split "
        "80/10/10 into train/dev/test, features min–max scaled to [0, 1] with the minimum and "
        "maximum of the *train* split only (dev/test use the same map, so they may leave [0, 1]). "
        "Iris, wine, breast cancer and digits are the copies scikit-learn ships inside its package "
        "(`sklearn.datasets.load_*`, no network); `sparse` is the seeded synthetic set with rare "
        "informative binary features (`datasets/synthetic.py`).",
        "",
        "| data set | train / dev / test | features | classes |",
        "|---|---|---:|---:|",
        *[f"| {ds} | {' / '.join(map(str, sz))} | {nf} | {nc} |" for ds, (sz, nf, nc) in sizes.items()],
        "",
        f"**Models** (`bench/training/models.py`): `linear` = the tutorial's softmax regression "
        f"(`X @ W + b`, W ~ N(0, {LINEAR_INIT_STD}²), b = 0); `mlp` = Linear–Sigmoid–Linear with "
        f"{c0.hidden} hidden units (torch.nn.Linear's default uniform init). Loss: mean "
        "cross-entropy. Initial weights are drawn once in NumPy and copied into both frameworks; the "
        "mini-batch order (one NumPy permutation of the training set per epoch) is shared too.",
        "",
        "**Rules** (`bench/training/train_rules.py`):",
        "",
        *[f"- `{r}`: {train_rules.describe(r, c0.lr)}" for r in rules_used],
        "",
        "**Columns.** Losses and accuracies are on the *whole* split with the parameters after the "
        "last epoch (`torch / JAX`); test accuracy once, at the end. ms/epoch is the median over "
        "epochs of the wall time of one epoch's updates (gather, forward, backward, optimizer step; "
        "evaluation excluded): PyTorch eager (`zero_grad`/`backward`/`step`), JAX one jitted "
        "function per mini-batch with donated buffers (the first epoch, which compiles, is "
        "discounted by the median). torch/JAX time > 1 means JAX is faster. Max rel. loss diff is "
        "max over epochs of |L_torch − L_JAX| / |L_JAX| over the train and dev curves: how far the "
        "two frameworks drift apart on identical inputs (a few float32 ulps, ~1e-7, is rounding; "
        "`tests/test_training_parity.py` holds Iris to it).",
        "",
        "Plots: `loss_<data set>.png`, one per data set: rows = models, one panel per rule, train "
        "(blue) and dev (orange) loss per epoch, PyTorch (thick) and JAX (thin, dashed) overlaid "
        "(they coincide when the frameworks agree). All curves: `histories.json`.",
        "",
        "## Results",
        "",
        table(results),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

# Colour = split, line = framework: PyTorch thick and translucent, JAX thin and dashed on
# top, so coinciding curves read as one thick line with a dashed core.
_COLOURS = {"train": "C0", "dev": "C1"}
_STYLE = {
    "torch": dict(lw=3.0, alpha=0.45, ls="-"),
    "jax": dict(lw=1.0, alpha=1.0, ls=(0, (4, 2))),
}
_LABEL = {"torch": "PyTorch", "jax": "JAX"}


def plot_dataset(results, dataset: str) -> bytes:
    """PNG bytes of one data set's figure (rows = models, columns = rules)."""
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = [h for h in results if next(iter(h.values())).config.dataset == dataset]
    models = list(dict.fromkeys(next(iter(h.values())).config.model for h in runs))
    rules_ = list(dict.fromkeys(next(iter(h.values())).config.rule for h in runs))
    fig = Figure(figsize=(3.4 * len(rules_), 2.9 * len(models) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global backend
    axes = fig.subplots(len(models), len(rules_), squeeze=False, sharex=True)
    for hists in runs:
        c = next(iter(hists.values())).config
        ax = axes[models.index(c.model)][rules_.index(c.rule)]
        for fw, h in hists.items():
            x = np.arange(len(h.train_loss))
            for part, curve in (("train", h.train_loss), ("dev", h.dev_loss)):
                ax.plot(x, curve, color=_COLOURS[part], label=f"{_LABEL[fw]} {part}", **_STYLE[fw])
        ax.set_yscale("log")
        # Plain numbers (0.9, not 9×10⁻¹) on the log axis; minor ticks labelled only on short ranges.
        plain = ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
        lo, hi = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if hi / lo < 20 else ticker.NullFormatter())
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(f"{c.model} · {c.rule}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if c.rule == rules_[0]:
            ax.set_ylabel("cross-entropy")
        if c.model == models[-1]:
            ax.set_xlabel("epoch")
    handles, labels = axes[0][0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i].endswith("dev"), labels[i].startswith("JAX")))
    fig.legend([handles[i] for i in order], [labels[i] for i in order],
               loc="outside upper right", ncols=4, fontsize=9)
    c0 = next(iter(runs[0].values())).config
    fig.suptitle(
        f"{dataset}: loss per epoch, PyTorch vs JAX ({c0.dtype}, batch {c0.batch_size}, seed {c0.seed})",
        x=0.01, ha="left",
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


# --------------------------------------------------------------------------- driver


def _compact(h: History) -> dict:
    """``h.as_dict()`` with float32 metrics at 9 significant digits (exact for float32) and
    times at 4, which keeps histories.json small."""
    d = h.as_dict()
    digits = 9 if h.config.dtype == "float32" else 17
    for key in ("train_loss", "train_acc", "dev_loss", "dev_acc"):
        d[key] = [float(f"{v:.{digits}g}") for v in d[key]]
    d["epoch_time"] = [float(f"{v:.4g}") for v in d["epoch_time"]]
    return d


def write_results(results, out: Path, *, command: str, elapsed_s: float, frameworks=FRAMEWORKS,
                  info: dict | None = None) -> list[Path]:
    """Plots, histories.json and training.md under ``out``; ``info`` is ``machine.collect()``'s
    record from before the runs (collected here, before any file is written, when absent:
    the checkout's state is recorded as the runs saw it, not with their output)."""
    info = machine.collect() if info is None else info
    out = Path(out)
    written = []
    for ds in dict.fromkeys(next(iter(h.values())).config.dataset for h in results):
        path = out / f"loss_{ds}.png"
        write_atomic(path, plot_dataset(results, ds))
        written.append(path)
    payload = [{fw: _compact(h) for fw, h in hists.items()} for hists in results]
    path = out / "histories.json"
    doc = {"command": command, "elapsed_s": elapsed_s, "machine": info, "runs": payload}
    write_atomic(path, json.dumps(doc, separators=(",", ":"), default=str) + "\n")
    written.append(path)
    path = out / "training.md"
    write_atomic(path, markdown(results, command=command, elapsed_s=elapsed_s, frameworks=frameworks, info=info))
    written.append(path)
    return written


def sweep(out=DEFAULT_OUT, *, command: str | None = None, frameworks=FRAMEWORKS, show_progress=True,
          datasets_=None, models=MODELS, rules_=None, epochs=None, **common) -> list[Path]:
    """Run the sweep and write ``out``; returns the files written."""
    configs = sweep_configs(datasets_, models, rules_, epochs, **common)
    info = machine.collect()
    t0 = time.perf_counter()
    results = run_sweep(configs, frameworks, show_progress)
    elapsed = time.perf_counter() - t0
    command = command or " ".join(["python -m bench train --sweep", *sys.argv[1:]])
    return write_results(results, out, command=command, elapsed_s=elapsed, frameworks=frameworks, info=info)


__all__ = ["SWEEP_EPOCHS", "DEFAULT_OUT", "sweep", "sweep_configs", "run_sweep", "write_results",
           "write_atomic", "table", "markdown", "plot_dataset"]
