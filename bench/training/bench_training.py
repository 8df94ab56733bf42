"""Training throughput on Iris: steps per second of whole training steps (pytest-benchmark).

One benchmark call is one epoch of the tutorial's setting: the linear model (softmax
regression) on Iris' 120 training samples in mini-batches of 24, i.e. 5 steps of
gather + forward + cross-entropy + backward + update, with the seed presets
(``rules.preset(rule, "seed")``); ``jax-ours-scan-20epochs`` makes 20 such epochs per
call. ``extra_info["steps_per_call"]`` (5, or 100) lets the report turn the median into
steps/s. Variants (``extra_info["variant"]``):

- ``torch-tutorial``: the tutorial's eager loop, hand-written in-place updates under
  ``torch.no_grad`` (``bench/training/tutorial_torch.py``);
- ``torch-ours-<impl>``: ``impl_torch.optimizer_for(rule, params, impl=<impl>)`` for each
  impl in ``impl_torch.IMPLS``, eager ``zero_grad``/``backward``/``step``;
- ``torch-optim``: the rule's ``torch.optim`` peer with the seed's numbers
  (``peers.peer_settings``: where torch.optim fixes eps outside the root and the seed puts
  it inside, a different rounding of the same cost), when the rule has one;
- ``torch-compiled-ours`` / ``torch-compiled-optim``: the whole training step
  (``zero_grad``, forward, loss, ``backward``, ``step``) in one ``torch.compile``d
  function (default ``fullgraph=False``), with ``impl_torch``'s default impl or
  ``torch.optim``'s default class: what a user who compiles the training step gets;
- ``jax-optax``: the rule's optax peer inside one jitted function per mini-batch, when it
  has one;
- ``jax-ours-transform``: ``impl_jax.transformation`` the same way;
- ``jax-ours-step``: a jitted gradient function, then ``impl_jax.make_step(rule)`` (two
  dispatches per mini-batch);
- ``jax-ours-train-step``: ``impl_jax.make_train_step(loss, rule)``, forward, backward and
  update in one jitted call per mini-batch;
- ``jax-ours-scan``: ``impl_jax.make_train_loop(loss, rule)``, the whole epoch in one call
  (``lax.scan`` over the mini-batches);
- ``jax-ours-scan-20epochs``: the same, 20 epochs' mini-batch orders (100 steps) per call,
  which shows the per-step cost once the call overhead is spread out.

JAX functions are compiled and warmed up before timing; parameters and optimizer states
are threaded through the calls (donated where the function donates) and every call ends
with ``jax.block_until_ready``. ``jax-empty-jit`` is no training at all: a jitted identity on
the scan's arguments (params, state, data, batches), the floor any one-call epoch pays.
Rounds are fixed (``benchmark.pedantic``) to keep the
suite short. Group: ``training-iris``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import datasets
from adaptbench import rules
from bench import peers
from . import models, tutorial_torch
from .train_runs import batch_order

SCHEMA = 1
GROUP = "training-iris"
RULES = tuple(rules.RULES)
BATCH_SIZE = 24
ROUNDS = 60
WARMUP_ROUNDS = 3


def _torch_impls() -> tuple[str, ...]:
    try:
        import impl_torch
    except ImportError:  # collected without impl_torch: its variants are not listed
        return ()
    return tuple(impl_torch.IMPLS)


VARIANTS = (
    "torch-tutorial",
    *(f"torch-ours-{impl}" for impl in _torch_impls()),
    "torch-optim",
    "torch-compiled-ours",
    "torch-compiled-optim",
    "jax-optax",
    "jax-ours-transform",
    "jax-ours-step",
    "jax-ours-train-step",
    "jax-ours-scan",
    "jax-ours-scan-20epochs",
    "jax-empty-jit",
)
SCAN_EPOCHS = {"jax-ours-scan": 1, "jax-ours-scan-20epochs": 20, "jax-empty-jit": 1}


@functools.lru_cache(maxsize=None)
def _problem(epochs: int = 1):
    """Iris (float32), the tutorial's initial weights, ``epochs`` epochs' mini-batches
    (5 x 24 each, stacked: ``(5 * epochs, 24)``)."""
    split = datasets.load("iris", seed=0, dtype=np.float32)
    init = models.init_params("linear", split.n_features, split.n_classes, seed=0, dtype=np.float32)
    batches = [b for epoch in batch_order(len(split.train[1]), BATCH_SIZE, epochs, seed=0) for b in epoch]
    assert all(len(b) == BATCH_SIZE for b in batches), "Iris' 120 samples split into equal batches"
    return split, init, np.stack(batches)


def steps_per_call(variant: str) -> int:
    return int(_problem(SCAN_EPOCHS.get(variant, 1))[2].shape[0])


# --------------------------------------------------------------------------- torch


def _torch_epoch(variant: str, rule):
    import torch

    from . import models_torch

    split, init, batches = _problem()
    X, y = torch.from_numpy(split.train[0]), torch.from_numpy(split.train[1])
    idx = [torch.from_numpy(b) for b in batches]
    if variant == "torch-tutorial":
        W = torch.tensor(init["W"], requires_grad=True)
        b = torch.tensor(init["b"], requires_grad=True)
        states = tutorial_torch.init_states(rule, [W, b])

        def epoch():
            for i in idx:
                loss = tutorial_torch.linear_step(rule, W, b, states, X[i], y[i])
            return loss

        return epoch
    model = models_torch.Model("linear", init)
    if variant.startswith("torch-ours-") or variant == "torch-compiled-ours":
        import impl_torch

        impl = None if variant == "torch-compiled-ours" else variant.removeprefix("torch-ours-")
        opt = impl_torch.optimizer_for(rule, model.parameters(), impl=impl)
    elif variant in ("torch-optim", "torch-compiled-optim"):
        name, kw = peers.peer_settings(rule, "torch")
        opt = getattr(torch.optim, name)(model.parameters(), foreach=False, **kw)
    else:
        raise ValueError(variant)

    def train_step(xb, yb):
        opt.zero_grad()
        loss = models_torch.loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    step = torch.compile(train_step) if variant.startswith("torch-compiled-") else train_step

    def epoch():
        for i in idx:
            loss = step(X[i], y[i])
        return loss

    return epoch


# --------------------------------------------------------------------------- jax


def _jax_epoch(variant: str, rule):
    import jax
    import jax.numpy as jnp
    import optax

    import impl_jax
    from bench.peers import optax_peer
    from . import models_jax

    split, init, batches = _problem(SCAN_EPOCHS.get(variant, 1))
    X, y = jnp.asarray(split.train[0]), jnp.asarray(split.train[1])
    idx = jnp.asarray(batches.astype(np.int32))
    rows = [idx[k] for k in range(idx.shape[0])]
    loss = functools.partial(models_jax.loss, "linear")
    grad_fn = jax.grad(loss)
    params = models_jax.to_params("linear", init)

    def one_step(tx, params, opt_state, i):
        grads = grad_fn(params, X[i], y[i])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def batch_loss(params, batch):
        return loss(params, *batch)

    if variant in ("jax-optax", "jax-ours-transform"):
        tx = optax_peer(rule)[0] if variant == "jax-optax" else impl_jax.transformation(rule)
        state = {"params": params, "opt": tx.init(params)}
        fn = jax.jit(functools.partial(one_step, tx), donate_argnums=(0, 1))

        def epoch():
            p, o = state["params"], state["opt"]
            for i in rows:
                p, o = fn(p, o, i)
            state["params"], state["opt"] = p, o
            return jax.block_until_ready(p)
    elif variant in SCAN_EPOCHS:
        run = (jax.jit(lambda p, o, data, b: (p, o, b), donate_argnums=(0, 1)) if variant == "jax-empty-jit"
               else impl_jax.make_train_loop(batch_loss, rule))
        state = {"params": params, "opt": impl_jax.init_optimizer(rule, params)}

        def epoch():
            state["params"], state["opt"], _ = run(state["params"], state["opt"], (X, y), idx)
            return jax.block_until_ready(state["params"])
    elif variant == "jax-ours-train-step":
        step = impl_jax.make_train_step(batch_loss, rule)
        state = {"params": params, "opt": impl_jax.init_optimizer(rule, params)}
        batches_xy = [(X[i], y[i]) for i in rows]

        def epoch():
            p, o = state["params"], state["opt"]
            for batch in batches_xy:
                p, o, _ = step(p, o, batch)
            state["params"], state["opt"] = p, o
            return jax.block_until_ready(p)
    elif variant == "jax-ours-step":
        step = impl_jax.make_step(rule)
        grads_of = jax.jit(lambda params, i: grad_fn(params, X[i], y[i]))
        state = {"params": params, "opt": impl_jax.init(rule, params)}

        def epoch():
            p, o = state["params"], state["opt"]
            for i in rows:
                p, o = step(p, o, grads_of(p, i))
            state["params"], state["opt"] = p, o
            return jax.block_until_ready(p)
    else:
        raise ValueError(variant)
    return epoch


# --------------------------------------------------------------------------- benchmark


# The variants that time a peer, and which peer: a rule without a setting there has no row;
# nor has a rule the tutorial did not write (``tutorial_torch.RULES``) a tutorial row.
PEER_OF = {"torch-optim": "torch", "torch-compiled-optim": "torch", "jax-optax": "optax"}
CASES = [(rule, variant) for rule in RULES for variant in VARIANTS
         if (variant not in PEER_OF or peers.has_peer(rules.preset(rule, "seed"), PEER_OF[variant]))
         and (variant != "torch-tutorial" or rule in tutorial_torch.RULES)]


@pytest.mark.parametrize("rule_name, variant", CASES, ids=[f"{r}-{v}" for r, v in CASES])
def test_training_iris(benchmark, rule_name, variant):
    import torch

    rule = rules.preset(rule_name, "seed")
    framework = variant.split("-", 1)[0]
    epoch = (_torch_epoch if framework == "torch" else _jax_epoch)(variant, rule)
    for _ in range(2):  # compile (JAX) and allocate states before timing
        epoch()
    benchmark.group = GROUP
    benchmark.extra_info.update(
        adaptbench=SCHEMA,
        kind="training",
        dataset="iris",
        model="linear",
        rule=rule_name,
        framework=framework,
        variant=variant,
        impl=variant,
        dtype="float32",
        batch_size=BATCH_SIZE,
        steps_per_call=steps_per_call(variant),
        samples_per_call=steps_per_call(variant) * BATCH_SIZE,
        torch_threads=torch.get_num_threads(),
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )
    benchmark.pedantic(epoch, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["steps_per_s"] = steps_per_call(variant) / float(stats.stats.median)
    # It trained: the parameters stayed finite.
    last = epoch()
    assert np.all(np.isfinite(np.asarray(last.detach() if hasattr(last, "detach") else last["W"])))
