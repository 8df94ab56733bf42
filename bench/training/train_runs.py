"""One seeded training run per framework, from the same data, weights and batch order.

``run(config)`` loads the data set (``datasets.load``), draws the initial weights once in
NumPy (``bench.models.init_params``) and the mini-batch order once in NumPy
(``batch_order``: a fresh permutation of the training indices per epoch; the last batch
of an epoch is smaller when the batch size does not divide the training set), then
trains the PyTorch and/or the JAX model from copies of the same arrays.

Recorded per epoch (index 0 is before the first update): the loss and accuracy on the
*whole* train and dev splits evaluated with the parameters at the end of the epoch (not
the average of the mini-batch losses seen during it, which would mix parameter values);
the wall time of the epoch's updates (batch gather, forward, backward, optimizer step;
evaluation excluded; JAX synchronised with ``block_until_ready``; the first JAX epoch
includes compilation). At the end: test loss and accuracy.

PyTorch runs eagerly (``zero_grad``/``backward``/``step``, the tutorial's loop with
an optimizer object); JAX runs one jitted function per mini-batch (gather, forward,
backward and update, parameters and optimizer state donated). float64 JAX runs inside
``with jax.enable_x64(True):`` — never globally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

import numpy as np

import datasets

from . import train_rules
from .progress import advance
from .models import DEFAULT_HIDDEN, check_model, init_params

FRAMEWORKS: tuple[str, ...] = ("torch", "jax")
METRICS: tuple[str, ...] = ("train_loss", "train_acc", "dev_loss", "dev_acc")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    dataset: str = "iris"
    model: str = "linear"
    rule: str = "rmsprop"
    epochs: int = 50
    batch_size: int = 24
    dtype: str = "float32"
    seed: int = 0
    hidden: int = DEFAULT_HIDDEN
    lr: float | None = None
    torch_impl: str | None = None

    def __post_init__(self):
        if self.dataset not in datasets.NAMES:
            raise ValueError(f"unknown data set {self.dataset!r}; known: {', '.join(datasets.NAMES)}")
        check_model(self.model)
        train_rules.check_rule(self.rule)
        train_rules.spec(self.rule, self.lr)
        for name in ("epochs", "batch_size", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.dtype not in datasets.DTYPES:
            raise ValueError(f"dtype must be one of {datasets.DTYPES}, got {self.dtype!r}")


@dataclasses.dataclass
class History:
    framework: str
    config: RunConfig
    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_acc: list[float] = dataclasses.field(default_factory=list)
    dev_loss: list[float] = dataclasses.field(default_factory=list)
    dev_acc: list[float] = dataclasses.field(default_factory=list)
    epoch_time: list[float] = dataclasses.field(default_factory=list)
    steps_per_epoch: int = 0
    test_loss: float = float("nan")
    test_acc: float = float("nan")

    def record(self, train: tuple[float, float], dev: tuple[float, float]) -> None:
        self.train_loss.append(train[0])
        self.train_acc.append(train[1])
        self.dev_loss.append(dev[0])
        self.dev_acc.append(dev[1])

    @property
    def time_per_epoch(self) -> float:
        """Median epoch time: robust to the compiling first JAX epoch and to noisy neighbours."""
        return float(np.median(self.epoch_time)) if self.epoch_time else float("nan")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["time_per_epoch"] = self.time_per_epoch
        return d


def batch_order(n_train: int, batch_size: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """Per epoch, the mini-batches' index arrays: ``default_rng((seed, 1)).permutation`` cut in order."""
    rng = np.random.default_rng((seed, 1))
    order = []
    for _ in range(epochs):
        perm = rng.permutation(n_train)
        order.append([perm[i:i + batch_size] for i in range(0, n_train, batch_size)])
    return order


def prepare(config: RunConfig):
    """``(split, init_params, batch order)`` shared by both frameworks."""
    split = datasets.load(config.dataset, seed=config.seed, dtype=config.dtype)
    init = init_params(config.model, split.n_features, split.n_classes,
                       hidden=config.hidden, seed=config.seed, dtype=config.dtype)
    order = batch_order(len(split.train[1]), config.batch_size, config.epochs, config.seed)
    return split, init, order


def run_torch(config: RunConfig, split, init, order, progress=None) -> History:
    import torch

    from . import models_torch

    model = models_torch.Model(config.model, init)
    opt = train_rules.torch_optimizer(config.rule, model.parameters(), lr=config.lr,
                                      impl=config.torch_impl)
    Xtr, ytr, Xdev, ydev, Xte, yte = (torch.from_numpy(a) for a in split)
    batches = [[torch.from_numpy(idx) for idx in epoch] for epoch in order]
    hist = History("torch", config, steps_per_epoch=len(order[0]) if order else 0)
    evaluate = models_torch.evaluate
    hist.record(evaluate(model, Xtr, ytr), evaluate(model, Xdev, ydev))
    loss_fn = models_torch.loss_fn
    for epoch in batches:
        t0 = time.perf_counter()
        for idx in epoch:
            opt.zero_grad()
            loss = loss_fn(model(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        hist.epoch_time.append(time.perf_counter() - t0)
        hist.record(evaluate(model, Xtr, ytr), evaluate(model, Xdev, ydev))
        if progress is not None:
            advance(progress, f"torch loss {hist.train_loss[-1]:.4f}")
    hist.test_loss, hist.test_acc = evaluate(model, Xte, yte)
    return hist


@functools.lru_cache(maxsize=None)
def _jax_functions(model: str, rule: str, lr):
    """Jitted ``(train_step, metrics, init)`` for one model and rule (cached across runs)."""
    import jax
    import optax

    from . import models_jax

    tx = train_rules.jax_transformation(rule, lr)

    def train_step(params, opt_state, X, y, idx):
        grads = jax.grad(models_jax.loss, argnums=1)(model, params, X[idx], y[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    step = jax.jit(train_step, donate_argnums=(0, 1))
    metrics = jax.jit(functools.partial(models_jax.metrics, model))
    return step, metrics, tx.init


def x64(dtype: str):
    """``jax.enable_x64(True)`` for float64 runs, a no-op context otherwise."""
    if np.dtype(dtype) == np.float64:
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def run_jax(config: RunConfig, split, init, order, progress=None) -> History:
    with x64(config.dtype):
        return _run_jax(config, split, init, order, progress)


def _run_jax(config, split, init, order, progress) -> History:
    import jax
    import jax.numpy as jnp

    from . import models_jax

    step, metrics, opt_init = _jax_functions(config.model, config.rule, config.lr)
    params = models_jax.to_params(config.model, init)
    opt_state = opt_init(params)
    Xtr, ytr, Xdev, ydev, Xte, yte = (jnp.asarray(a) for a in split)
    batches = [[jnp.asarray(idx.astype(np.int32)) for idx in epoch] for epoch in order]

    def evaluate(X, y):
        loss, correct = metrics(params, X, y)
        return float(loss), int(correct) / len(y)

    hist = History("jax", config, steps_per_epoch=len(order[0]) if order else 0)
    hist.record(evaluate(Xtr, ytr), evaluate(Xdev, ydev))
    for epoch in batches:
        t0 = time.perf_counter()
        for idx in epoch:
            params, opt_state = step(params, opt_state, Xtr, ytr, idx)
        jax.block_until_ready(params)
        hist.epoch_time.append(time.perf_counter() - t0)
        hist.record(evaluate(Xtr, ytr), evaluate(Xdev, ydev))
        if progress is not None:
            advance(progress, f"jax loss {hist.train_loss[-1]:.4f}")
    hist.test_loss, hist.test_acc = evaluate(Xte, yte)
    return hist


RUNNERS = {"torch": run_torch, "jax": run_jax}


def run(config: RunConfig, frameworks=FRAMEWORKS, progress=None) -> dict[str, History]:
    """Train ``config`` in each framework from the same data, weights and batch order."""
    for fw in frameworks:
        if fw not in RUNNERS:
            raise ValueError(f"framework must be one of {FRAMEWORKS}, got {fw!r}")
    split, init, order = prepare(config)
    return {fw: RUNNERS[fw](config, split, init, order, progress) for fw in frameworks}


def max_rel_diff(a, b) -> float:
    """``max_i |a_i - b_i| / |b_i|`` over two curves (0 where both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))
    return float(np.max(rel)) if rel.size else 0.0
