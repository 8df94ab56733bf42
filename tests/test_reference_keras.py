"""The porting guide's Keras column, proven on Keras 3's JAX and torch backends.

Each row maps one Keras optimizer setting onto our specification (the float64 oracle,
``rules.reference``), impl_torch and impl_jax built from that one rule object, and, where
one exists, the torch.optim and optax setting that computes the same update. Keras runs in
one worker process per backend (tests/keras_worker.py; the backend is fixed at import),
which returns every case's trajectory; the tests here compare them step by step:
float64 within ``KERAS_FP64`` (relative; only rounding differs), float32 within
``rules.tolerance``. Rows that cannot map are demonstrated by a test that measures the
difference. Skipped where Keras is not installed (it is in the ``dev`` extra).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import impl_jax  # noqa: E402
import impl_torch  # noqa: E402
from adaptbench import rules  # noqa: E402
from adaptbench.rules import reference  # noqa: E402
from tests.reference_libraries import (  # noqa: E402
    optax_trajectory,
    problem,
    torch_optim_trajectory,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")

# float64: Keras, the oracle and the peers differ by rounding only (measured worst 1.5e-14
# relative, docs/porting-keras.md). Two clipping
# exceptions: torch's clip_grad_norm_ divides by ``norm + 1e-6``, and Keras's torch backend
# computes its clip scale in float32 (``ops.minimum``/``ops.maximum`` of a float64 0-d
# tensor and a Python float return float32 there: measured 7.4e-8 and 4.5e-8 relative).
KERAS_FP64 = 1e-12
TORCH_CLIP_FP64 = 1e-6
STEPS = 20
SHAPES = ((4, 3), (3,), (1000,))
DTYPES = ("float64", "float32")
BACKEND_MODES = [("jax", "apply"), ("jax", "stateless"), ("torch", "apply")]


def _schedule(lr: float, decay: float):
    """Keras's ``InverseTimeDecay(lr, 1, decay)`` as a spec: ``lr / (1 + decay * count)``."""
    return {"name": "InverseTimeDecay", "kwargs": {"initial_learning_rate": lr, "decay_steps": 1, "decay_rate": decay}}


def _inverse_time(lr: float, decay: float):
    return lambda count: lr / (1 + decay * count)


# --- gradient clipping, as the peers' own utilities do it ------------------------------------


def _clip_global(grads, c):
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    return [g * min(1.0, c / norm) for g in grads]


def _clip_each(grads, c):
    return [g * min(1.0, c / float(np.sqrt(np.sum(g * g)))) for g in grads]


class _ClipThenStep:
    """A torch.optim optimizer whose ``step`` first clips with ``torch.nn.utils.clip_grad_norm_``,
    over all params (``per_tensor=False``) or each on its own."""

    def __init__(self, optimizer, params, max_norm: float, per_tensor: bool):
        self.optimizer, self.params, self.max_norm, self.per_tensor = optimizer, params, max_norm, per_tensor

    def step(self):
        groups = [[p] for p in self.params] if self.per_tensor else [self.params]
        for group in groups:
            torch.nn.utils.clip_grad_norm_(group, self.max_norm)
        self.optimizer.step()


def _clipped(factory, max_norm, per_tensor):
    return lambda ps: _ClipThenStep(factory(ps), ps, max_norm, per_tensor)


# --- the table ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One Keras setting and what it maps onto (None: no equivalent setting)."""

    id: str
    optimizer: str  # a keras.optimizers class
    kwargs: dict
    rule: rules.Rule | None  # our specification; None where it has no such setting
    torch_optim: Callable | None = None  # factory(list of tensors)
    optax: optax.GradientTransformation | None = None
    schedule: dict | None = None  # Keras learning_rate schedule (keras_worker)
    clip: Callable | None = None  # grads -> grads, applied before the oracle and our impls
    torch_fp64: float = KERAS_FP64  # float64 bound against torch.optim
    keras_torch_fp64: float = KERAS_FP64  # float64 bound for Keras's torch backend
    grad_scale: float = 1.0  # every gradient of the problem times this (eps matters for small ones)
    min_gap: float = 0.1  # DIFFERENCES: the least gap (``_gap``) the test asserts

    def keras_case(self) -> dict:
        return {"id": self.id, "optimizer": self.optimizer, "kwargs": self.kwargs, "schedule": self.schedule,
                "grad_scale": self.grad_scale, "dtypes": list(DTYPES)}


ROWS = [
    # Keras's defaults.
    Row(
        "adagrad-defaults", "Adagrad", {},
        rules.preset("adagrad", "optax", lr=1e-3),
        optax=optax.adagrad(1e-3),
    ),
    Row(
        "adadelta-defaults", "Adadelta", {},
        rules.Adadelta(lr=1e-3, rho=0.95, eps=1e-7),
        torch_optim=lambda ps: torch.optim.Adadelta(ps, lr=1e-3, rho=0.95, eps=1e-7),
        optax=optax.adadelta(1e-3, rho=0.95, eps=1e-7),
    ),
    Row(
        "rmsprop-defaults", "RMSprop", {},
        rules.RMSprop(lr=1e-3, alpha=0.9, eps=1e-7, eps_in_sqrt=True),
        optax=optax.rmsprop(1e-3, decay=0.9, eps=1e-7),
    ),
    # The seed tutorial's settings (rules.preset(name, "seed")).
    Row(
        "adagrad-seed", "Adagrad", {"learning_rate": 0.02, "initial_accumulator_value": 0.0, "epsilon": 1e-6},
        rules.preset("adagrad", "seed"),
        optax=optax.adagrad(0.02, initial_accumulator_value=0.0, eps=1e-6),
    ),
    Row(
        "adadelta-seed", "Adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6},
        rules.preset("adadelta", "seed"),
        torch_optim=lambda ps: torch.optim.Adadelta(ps),
        optax=optax.adadelta(1.0, rho=0.9, eps=1e-6),
    ),
    Row(
        "rmsprop-seed", "RMSprop", {"learning_rate": 0.02, "rho": 0.9, "epsilon": 1e-6},
        rules.preset("rmsprop", "seed"),
        optax=optax.rmsprop(0.02, decay=0.9, eps=1e-6),
    ),
    # centered / momentum (constant lr).
    Row(
        "rmsprop-centered", "RMSprop", {"learning_rate": 1e-2, "rho": 0.9, "epsilon": 1e-3, "centered": True},
        rules.RMSprop(lr=1e-2, alpha=0.9, eps=1e-3, eps_in_sqrt=True, centered=True),
        optax=optax.rmsprop(1e-2, decay=0.9, eps=1e-3, centered=True),
    ),
    Row(
        "rmsprop-momentum-centered", "RMSprop",
        {"learning_rate": 1e-2, "rho": 0.9, "epsilon": 1e-3, "momentum": 0.9, "centered": True},
        rules.RMSprop(lr=1e-2, alpha=0.9, eps=1e-3, eps_in_sqrt=True, momentum=0.9, centered=True),
        optax=optax.rmsprop(1e-2, decay=0.9, eps=1e-3, momentum=0.9, centered=True),
    ),
    # eps = 0: the one setting where eps inside and outside the root agree.
    Row(
        "rmsprop-eps-zero", "RMSprop", {"learning_rate": 1e-2, "rho": 0.99, "epsilon": 0.0},
        rules.RMSprop(lr=1e-2, eps=0.0),
        torch_optim=lambda ps: torch.optim.RMSprop(ps, lr=1e-2, eps=0.0),
        optax=optax.rmsprop(1e-2, decay=0.99, eps=0.0),
    ),
    # torch.optim's lr_decay is Keras's InverseTimeDecay(lr, 1, lr_decay).
    Row(
        "adagrad-lr-decay", "Adagrad", {"initial_accumulator_value": 0.1, "epsilon": 0.0},
        rules.Adagrad(lr=0.1, lr_decay=0.5, eps=0.0, initial_accumulator_value=0.1),
        torch_optim=lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.5, eps=0.0, initial_accumulator_value=0.1),
        optax=optax.adagrad(_inverse_time(0.1, 0.5), initial_accumulator_value=0.1, eps=0.0),
        schedule=_schedule(0.1, 0.5),
    ),
    # Keras's weight decay is decoupled: rules' decoupled_weight_decay; optax's
    # add_decayed_weights(-lr * wd) after the rule; no torch.optim setting for these rules.
    Row(
        "rmsprop-weight-decay", "RMSprop", {"learning_rate": 1e-2, "rho": 0.9, "epsilon": 1e-3, "weight_decay": 0.1},
        rules.RMSprop(lr=1e-2, alpha=0.9, eps=1e-3, eps_in_sqrt=True, weight_decay=0.1, decoupled_weight_decay=True),
        optax=optax.chain(optax.rmsprop(1e-2, decay=0.9, eps=1e-3), optax.add_decayed_weights(-1e-2 * 0.1)),
    ),
    Row(
        "adadelta-weight-decay", "Adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6, "weight_decay": 0.1},
        rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.1, decoupled_weight_decay=True),
        optax=optax.chain(optax.adadelta(1.0, rho=0.9, eps=1e-6), optax.add_decayed_weights(-1.0 * 0.1)),
    ),
    Row(
        # the decay uses the step's learning rate: here Adagrad's clr
        "adagrad-weight-decay-lr-decay", "Adagrad", {"initial_accumulator_value": 0.1, "epsilon": 1e-7, "weight_decay": 0.1},
        rules.preset("adagrad", "optax", lr=0.1, lr_decay=0.5, weight_decay=0.1, decoupled_weight_decay=True),
        schedule=_schedule(0.1, 0.5),
    ),
    # Clipping: Keras clips before the weight decay and the update, as torch's
    # clip_grad_norm_ before step() and optax.clip_by_global_norm first in a chain do.
    Row(
        "adadelta-global-clipnorm", "Adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6, "global_clipnorm": 1.0},
        rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6),
        torch_optim=_clipped(lambda ps: torch.optim.Adadelta(ps), 1.0, per_tensor=False),
        optax=optax.chain(optax.clip_by_global_norm(1.0), optax.adadelta(1.0, rho=0.9, eps=1e-6)),
        clip=lambda gs: _clip_global(gs, 1.0),
        torch_fp64=TORCH_CLIP_FP64,
        keras_torch_fp64=TORCH_CLIP_FP64,
    ),
    Row(
        # per-tensor norm clipping: no optax transformation does it (clip_by_block_rms clips the RMS)
        "adadelta-clipnorm", "Adadelta", {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6, "clipnorm": 0.5},
        rules.Adadelta(lr=1.0, rho=0.9, eps=1e-6),
        torch_optim=_clipped(lambda ps: torch.optim.Adadelta(ps), 0.5, per_tensor=True),
        clip=lambda gs: _clip_each(gs, 0.5),
        torch_fp64=TORCH_CLIP_FP64,
        keras_torch_fp64=TORCH_CLIP_FP64,
    ),
    # SGD: Keras traces lr-scaled steps (m <- momentum*m - lr*g; p <- p + m), torch.optim and
    # ours the gradients (lr applied after): the same for a constant lr (a schedule: below).
    Row(
        "sgd-defaults", "SGD", {},
        rules.SGD(lr=0.01),
        torch_optim=lambda ps: torch.optim.SGD(ps, lr=0.01),
        optax=optax.sgd(0.01),
    ),
    Row(
        "sgd-momentum", "SGD", {"learning_rate": 0.05, "momentum": 0.9},
        rules.SGD(lr=0.05, momentum=0.9),
        torch_optim=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
        optax=optax.sgd(0.05, momentum=0.9),
    ),
    Row(
        "sgd-nesterov", "SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
        rules.SGD(lr=0.05, momentum=0.9, nesterov=True),
        torch_optim=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        optax=optax.sgd(0.05, momentum=0.9, nesterov=True),
    ),
    Row(
        "sgd-weight-decay", "SGD", {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.1},
        rules.SGD(lr=0.05, momentum=0.9, weight_decay=0.1, decoupled_weight_decay=True),
        optax=optax.chain(optax.sgd(0.05, momentum=0.9), optax.add_decayed_weights(-0.05 * 0.1)),
    ),
    # Adam: Keras divides by sqrt(v) + eps with the bias corrections folded into the step
    # size, torch.optim by sqrt(v / c2) + eps; only eps = 0 makes them one rule (the
    # adam-defaults rows below measure the rest).
    Row(
        "adam-eps-zero", "Adam", {"epsilon": 0.0},
        rules.Adam(lr=1e-3, eps=0.0),
        torch_optim=lambda ps: torch.optim.Adam(ps, lr=1e-3, eps=0.0),
        optax=optax.adam(1e-3, eps=0.0),
    ),
    Row(
        # Keras keeps the maximum of the raw v, as torch.optim does (optax.amsgrad: of v / c2)
        "adam-amsgrad-eps-zero", "Adam",
        {"learning_rate": 1e-2, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 0.0, "amsgrad": True},
        rules.Adam(lr=1e-2, beta1=0.8, beta2=0.99, eps=0.0, amsgrad=True),
        torch_optim=lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), eps=0.0, amsgrad=True),
    ),
    Row(
        # lr*wd large enough that decaying after the update instead would show
        "adamw-eps-zero", "AdamW", {"learning_rate": 1e-2, "weight_decay": 0.5, "epsilon": 0.0},
        rules.AdamW(lr=1e-2, weight_decay=0.5, eps=0.0),
        torch_optim=lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.5, eps=0.0),
        optax=optax.adamw(1e-2, weight_decay=0.5, eps=0.0),
    ),
]

# Settings that do not map, each with the nearest setting of ours (the test measures the gap).
DIFFERENCES = [
    # Keras decays decoupled; ours by default, torch.optim's and optax.adadelta's couple (g + wd*p).
    Row(
        "weight-decay-coupled", "RMSprop", {"learning_rate": 1e-2, "rho": 0.9, "epsilon": 0.0, "weight_decay": 0.1},
        rules.RMSprop(lr=1e-2, alpha=0.9, eps=0.0, weight_decay=0.1),
        torch_optim=lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=0.0, weight_decay=0.1),
    ),
    # Keras has no eps outside the root (torch.optim's RMSprop and Adagrad).
    Row(
        "rmsprop-eps-outside", "RMSprop", {"learning_rate": 1e-2, "rho": 0.99, "epsilon": 1e-3},
        rules.RMSprop(lr=1e-2, eps=1e-3),
        torch_optim=lambda ps: torch.optim.RMSprop(ps, lr=1e-2, eps=1e-3),
    ),
    # Keras's RMSprop momentum buffer holds lr-scaled increments (like optax); ours and
    # torch.optim's hold the unscaled ones: the same for a constant lr only.
    Row(
        "rmsprop-momentum-schedule", "RMSprop", {"rho": 0.9, "epsilon": 1e-3, "momentum": 0.9},
        None,
        optax=optax.rmsprop(_inverse_time(0.1, 0.5), decay=0.9, eps=1e-3, momentum=0.9),
        schedule=_schedule(0.1, 0.5),
    ),
    # Keras's SGD momentum likewise: optax's trace of lr-scaled steps, not optax.sgd (which
    # traces the gradients and scales after, as torch.optim and ours do).
    *(
        Row(
            f"sgd-{kind}-schedule", "SGD", {"momentum": 0.9, "nesterov": nesterov},
            None,
            optax=optax.chain(optax.scale_by_learning_rate(_inverse_time(0.1, 0.5)),
                              optax.trace(0.9, nesterov=nesterov)),
            schedule=_schedule(0.1, 0.5),
        )
        for kind, nesterov in (("momentum", False), ("nesterov", True))
    ),
    # Keras's Adam with its defaults against torch.optim's rule with the same lr and eps:
    # Keras's eps acts as eps / sqrt(1 - beta2**t) in torch.optim's formula (31.6 eps at the
    # first step, 7.1 eps at the 20th), which shows where sqrt(v) is not far above eps: the
    # same problem with its gradients scaled down. min_gap: float64 rounding is 1e-15.
    *(
        Row(
            row_id, "Adam", {},
            rules.Adam(lr=1e-3, eps=1e-7),
            torch_optim=lambda ps: torch.optim.Adam(ps, lr=1e-3, eps=1e-7),
            grad_scale=grad_scale,
            min_gap=min_gap,
        )
        for row_id, grad_scale, min_gap in (
            ("adam-defaults", 1.0, 1e-6),
            ("adam-defaults-grad-1e-3", 1e-3, 0.01),
            ("adam-defaults-grad-1e-6", 1e-6, 0.1),
        )
    ),
    # Keras's amsgrad keeps the maximum of the raw v (row adam-amsgrad-eps-zero); optax.amsgrad
    # (ours with amsgrad_bias_corrected) keeps it of v / c2.
    Row(
        "adam-amsgrad-bias-corrected", "Adam",
        {"learning_rate": 1e-2, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 0.0, "amsgrad": True},
        rules.Adam(lr=1e-2, beta1=0.8, beta2=0.99, eps=0.0, amsgrad=True, amsgrad_bias_corrected=True),
        optax=optax.amsgrad(1e-2, b1=0.8, b2=0.99, eps=0.0),
    ),
    # Keras's AdamW decays by 0.004 by default, torch.optim's (and rules.AdamW's) by 0.01.
    Row(
        "adamw-default-weight-decay", "AdamW", {"epsilon": 0.0},
        rules.AdamW(lr=1e-3, eps=0.0),
        torch_optim=lambda ps: torch.optim.AdamW(ps, lr=1e-3, eps=0.0),
        min_gap=0.01,
    ),
]

# Ours with each momentum-schedule row's settings: torch.optim's momentum (lr after).
MOMENTUM_SCHEDULE_OURS = {
    "rmsprop-momentum-schedule": lambda: impl_jax.rmsprop(
        _inverse_time(0.1, 0.5), alpha=0.9, eps=1e-3, momentum=0.9, eps_in_sqrt=True),
    "sgd-momentum-schedule": lambda: impl_jax.sgd(_inverse_time(0.1, 0.5), momentum=0.9),
    "sgd-nesterov-schedule": lambda: impl_jax.sgd(_inverse_time(0.1, 0.5), momentum=0.9, nesterov=True),
}


ALL_ROWS = {row.id: row for row in ROWS + DIFFERENCES}


# --- running ------------------------------------------------------------------------------------


def _problem():
    return problem(seed=14, steps=STEPS, shapes=SHAPES)


def _grads(row: Row):
    """The row's gradients: the problem's times ``row.grad_scale`` (as the worker scales them)."""
    return [[g * row.grad_scale for g in gs] for gs in _problem()[1]]


def oracle_trajectory(rule_at: Callable[[int], rules.Rule], grads) -> np.ndarray:
    """The float64 oracle's params after each step, step ``t`` (from 1) taken by ``rule_at(t)``."""
    out, ps = [], [np.asarray(p) for p in _problem()[0]]
    states = [reference.init_state(rule_at(1), p) for p in ps]
    for t, gs in enumerate(grads, start=1):
        stepped = [reference.step(rule_at(t), p, g, s) for p, g, s in zip(ps, gs, states)]
        ps, states = [x[0] for x in stepped], [x[1] for x in stepped]
        out.append(ps)
    return _flatten(out)


def _flatten(trajectory) -> np.ndarray:
    return np.stack([np.concatenate([np.ravel(leaf) for leaf in step]) for step in trajectory])


@lru_cache(maxsize=None)
def keras_results(backend: str) -> dict:
    """Every row's trajectories from one worker process on ``backend``."""
    params, grads = _problem()
    arrays = {f"param_{i}": p for i, p in enumerate(params)}
    arrays |= {f"grad_{k}_{i}": g for k, gs in enumerate(grads) for i, g in enumerate(gs)}
    with tempfile.TemporaryDirectory(prefix=f"keras-{backend}-") as tmp:
        work = Path(tmp)
        np.savez(work / "problem.npz", **arrays)
        (work / "cases.json").write_text(json.dumps([row.keras_case() for row in ALL_ROWS.values()]))
        out = work / "out.npz"
        done = subprocess.run(
            [sys.executable, "-m", "tests.keras_worker", *(str(work / n) for n in ("cases.json", "problem.npz", "out.npz"))],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1],
        )
        assert done.returncode == 0, f"keras worker ({backend}) failed:\n{done.stderr[-4000:]}"
        with np.load(out) as data:
            return {k: data[k] for k in data.files}


def keras_trajectory(backend: str, mode: str, row_id: str, dtype: str) -> np.ndarray:
    return keras_results(backend)[f"{row_id}|{dtype}|{mode}"]


@lru_cache(maxsize=None)
def peer_trajectory(row_id: str, peer: str, dtype: str) -> np.ndarray:
    """``steps x elements`` float64: the params after each step of ``peer`` on the row's setting."""
    row = ALL_ROWS[row_id]
    params, grads = _problem()[0], _grads(row)
    clipped = [row.clip(gs) for gs in grads] if row.clip else grads
    if peer == "oracle":
        return oracle_trajectory(lambda t: row.rule, clipped)
    if peer == "impl_torch":
        return _flatten(torch_optim_trajectory(lambda ps: impl_torch.optimizer_for(row.rule, ps), params, clipped, dtype))
    if peer == "impl_jax":
        return _flatten(optax_trajectory(impl_jax.transformation(row.rule), params, clipped, dtype))
    if peer == "torch.optim":
        return _flatten(torch_optim_trajectory(row.torch_optim, params, grads, dtype))
    if peer == "optax":
        return _flatten(optax_trajectory(row.optax, params, grads, dtype))
    raise ValueError(peer)


def _peers(row: Row) -> list[str]:
    peers = ["oracle", "impl_torch", "impl_jax"] if row.rule is not None else []
    return peers + [name for name, x in (("torch.optim", row.torch_optim), ("optax", row.optax)) if x is not None]


def _start() -> np.ndarray:
    return _flatten([_problem()[0]])[0]


def assert_same(actual: np.ndarray, expected: np.ndarray, dtype: str, fp64_bound: float = KERAS_FP64) -> None:
    """float64: ``|actual - expected| <= fp64_bound * max(|expected|, |start|)`` elementwise
    (a step's rounding error scales with the larger of ``p`` and ``p - delta``); float32:
    ``rules.tolerance``."""
    if dtype == "float64":
        worst = float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), np.abs(_start()))))
        assert worst < fp64_bound, f"max relative difference {worst:.3g} >= {fp64_bound:g}"
    else:
        tol = rules.tolerance(dtype)
        np.testing.assert_allclose(actual, expected, rtol=tol.rtol, atol=tol.atol)


# --- the tests ----------------------------------------------------------------------------------

MAPPED = [
    pytest.param(backend, mode, row.id, peer, dtype, id=f"{row.id}-{peer}-{backend}-{mode}-{dtype}")
    for row in ROWS
    for peer in _peers(row)
    for backend, mode in BACKEND_MODES
    for dtype in DTYPES
]


@pytest.mark.parametrize("backend,mode,row_id,peer,dtype", MAPPED)
def test_keras_setting_maps(backend, mode, row_id, peer, dtype):
    row = ALL_ROWS[row_id]
    bound = max(
        row.torch_fp64 if peer == "torch.optim" else KERAS_FP64,
        row.keras_torch_fp64 if backend == "torch" else KERAS_FP64,
    )
    assert_same(keras_trajectory(backend, mode, row_id, dtype), peer_trajectory(row_id, peer, dtype), dtype, bound)


def _gap(a: np.ndarray, b: np.ndarray, start: np.ndarray) -> float:
    """max |a - b| over every step, in units of the largest displacement from the start."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b - start)))


@pytest.mark.parametrize("backend,mode", BACKEND_MODES, ids=[f"{b}-{m}" for b, m in BACKEND_MODES])
@pytest.mark.parametrize("row_id", [row.id for row in DIFFERENCES if row.rule is not None])
def test_keras_differs_from_nearest_setting(backend, mode, row_id):
    """The nearest setting of ours and of the row's peers is off by ``row.min_gap`` of the
    whole displacement or more (float64: not rounding)."""
    row = ALL_ROWS[row_id]
    keras = keras_trajectory(backend, mode, row_id, "float64")
    for peer in _peers(row):
        assert _gap(keras, peer_trajectory(row_id, peer, "float64"), _start()) > row.min_gap, peer


@pytest.mark.parametrize("backend,mode", BACKEND_MODES, ids=[f"{b}-{m}" for b, m in BACKEND_MODES])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_id", list(MOMENTUM_SCHEDULE_OURS))
def test_keras_momentum_under_a_schedule_is_optaxs(backend, mode, dtype, row_id):
    """Keras's RMSprop and SGD momentum buffers trace lr-scaled steps, as optax's
    rmsprop and ``chain(scale_by_learning_rate, trace)`` do: equal to those under a
    schedule, and apart from ours (and torch.optim's, optax.sgd's), which scale after."""
    keras = keras_trajectory(backend, mode, row_id, dtype)
    assert_same(keras, peer_trajectory(row_id, "optax", dtype), dtype)
    params, grads = _problem()
    ours = _flatten(optax_trajectory(MOMENTUM_SCHEDULE_OURS[row_id](), params, grads, dtype))
    assert _gap(keras, ours, _start()) > 0.1


ADAM_DEFAULTS = [row.id for row in DIFFERENCES if row.id.startswith("adam-defaults")]


@pytest.mark.parametrize("backend,mode", BACKEND_MODES, ids=[f"{b}-{m}" for b, m in BACKEND_MODES])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_id", ADAM_DEFAULTS)
def test_keras_adam_eps_is_torchs_over_root_c2(backend, mode, dtype, row_id):
    """Keras's Adam is torch.optim's rule with eps replaced at step t by
    eps / sqrt(1 - beta2**t) (Keras adds eps to sqrt(v) and folds both bias corrections
    into the step size): no constant eps of ours or torch.optim's reproduces it."""
    rule = ALL_ROWS[row_id].rule
    oracle = oracle_trajectory(lambda t: rule.replace(eps=rule.eps / np.sqrt(1.0 - rule.beta2**t)), _grads(ALL_ROWS[row_id]))
    assert_same(keras_trajectory(backend, mode, row_id, dtype), oracle, dtype)


@pytest.mark.parametrize("backend,mode", BACKEND_MODES, ids=[f"{b}-{m}" for b, m in BACKEND_MODES])
def test_keras_adam_defaults_against_torch_in_float32(backend, mode):
    """Where the eps placement shows in float32: within ``rules.tolerance`` of
    torch.optim.Adam(lr=1e-3, eps=1e-7) at unit gradients, hundreds of tolerances off at
    gradients of 1e-6 (measured in docs/porting-keras.md)."""
    tol = rules.tolerance("float32")

    def tolerances(row_id):
        keras = keras_trajectory(backend, mode, row_id, "float32")
        torch_ = peer_trajectory(row_id, "torch.optim", "float32")
        return float(np.max(np.abs(keras - torch_) / (tol.atol + tol.rtol * np.abs(torch_))))

    assert tolerances("adam-defaults") <= 1.0
    assert tolerances("adam-defaults-grad-1e-6") > 100.0


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_has_no_maximize_and_no_eps_placement(backend):
    """No Keras optimizer takes ``maximize`` (negate the gradients instead) or a switch
    for eps's placement (only eps = 0 ports torch.optim's RMSprop/Adagrad/Adam): one
    ``epsilon``, or none (SGD)."""
    signatures = json.loads(str(keras_results(backend)["signatures"]))
    for name, keywords in signatures.items():
        assert "maximize" not in keywords, name
        assert [k for k in keywords if k.startswith("eps")] in (["epsilon"], []), name
        assert "lr_decay" not in keywords and "decoupled_weight_decay" not in keywords, name
