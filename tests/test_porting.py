"""docs/porting.md, proven: Adam, AdamW and SGD between torch.optim and optax.

Every row of the guide is a case here, under the row's id (``pytest tests/test_porting.py
-k <id>``). Each case runs two optimizers on the same seeded parameters and gradients
(``tests.reference_libraries.problem``: a [4, 3] weight and a [3] bias, 20 steps) and
compares the parameters after every step. Three kinds of row:

- **equal**: the two settings compute the same update. float64: 1e-12 relative, where only
  rounding can differ; float32: within ``rules.tolerance("float32")`` elementwise, the
  atol scaled by the tensor's largest entry and the rtol applied to the larger of the value
  and the one before the step (a step that nearly cancels is judged by its operands), as
  ``tests/test_parity.py`` judges every implementation against the oracle.
- **bitwise**: impl_torch's optimizer and torch.optim's with ``foreach=False``, bit for bit.
- **trap**: a port that looks right and is not. The gap after the last float64 step (no
  rounding in it) is asserted to be more than 100 times float32's rtol, to equal the figure
  docs/porting.md quotes, and to start at the step the guide names.

The rows that use the ``sgd`` rule's classes (``impl_torch.SGD``, ``impl_jax.sgd``,
``rules.preset("sgd", ...)``) skip until that rule is registered; the rows between
torch.optim.SGD and optax.sgd run now.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import impl_jax  # noqa: E402
import impl_torch  # noqa: E402
from adaptbench import rules  # noqa: E402
from tests.reference_libraries import optax_trajectory, problem, torch_optim_trajectory, x64  # noqa: E402

STEPS = 20
EXACT_IN_FP64 = 1e-12
# A trap must be unmistakable: far outside what float32 rounding could explain.
TRAP_FACTOR = 100

NEEDS_SGD = pytest.mark.skipif("sgd" not in rules.RULES, reason="sgd not registered yet")


class Torch(NamedTuple):
    """A torch-side optimizer: ``make(list_of_tensors)`` returns an object with ``step()``."""

    make: object

    def run(self, params, grads, dtype):
        return torch_optim_trajectory(self.make, params, grads, dtype)


class Jax(NamedTuple):
    """A JAX-side optimizer: ``make()`` returns the optax transformation. Built when the case
    runs, so that a row naming a rule not registered yet is collected (and skipped)."""

    make: object

    def run(self, params, grads, dtype):
        return optax_trajectory(self.make(), params, grads, dtype)


class Row(NamedTuple):
    """One row of the guide: ``a`` and ``b`` fed the same problem, its gradients scaled by
    ``grad_scale`` (small gradients where a term like eps_root only matters there)."""

    id: str
    a: Torch | Jax
    b: Torch | Jax
    grad_scale: float = 1.0
    marks: tuple = ()


def _params(rows):
    return [pytest.param(r, id=r.id, marks=r.marks) for r in rows]


def _trajectories(row: Row, dtype):
    params, grads = problem(steps=STEPS, grad_scale=row.grad_scale)
    return params, row.a.run(params, grads, dtype), row.b.run(params, grads, dtype)


def _assert_equal(params, got, want, dtype):
    """Elementwise, after every step (the module docstring's bound)."""
    tol = rules.tolerance(dtype) if dtype == "float32" else rules.Tolerance(EXACT_IN_FP64, EXACT_IN_FP64)
    before = params
    for k, (step_got, step_want) in enumerate(zip(got, want, strict=True)):
        for i, (x, y, y0) in enumerate(zip(step_got, step_want, before, strict=True)):
            allowed = tol.rtol * np.maximum(np.abs(y), np.abs(y0)) + tol.atol * np.max(np.abs(y))
            error = np.abs(x - y)
            assert np.all(error <= allowed), (
                f"step {k + 1}, tensor {i}: worst error {np.max(error):.3g}, "
                f"allowed {allowed.ravel()[np.argmax(error)]:.3g} ({dtype})"
            )
        before = step_want


def _gap(a_params, b_params) -> float:
    """The worst tensor's max |a - b| over its largest |b|."""
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y))) for x, y in zip(a_params, b_params, strict=True))


def _first_step_apart(a, b) -> int:
    """The first step (from 1) after which the trajectories differ beyond rounding."""
    return next(k + 1 for k, (x, y) in enumerate(zip(a, b, strict=True)) if _gap(x, y) > EXACT_IN_FP64)


# Schedules: a LambdaLR multiplier of torch's, and the same schedule as optax takes it (the
# learning rate itself, as a function of optax's step count). Inverse-time decay changes
# the lr at every step, so a one-step shift shows at the first.
LR = 1e-2


def decay(k):
    return 1.0 / (1.0 + 0.5 * k)


def schedule(count):
    return LR * decay(count)


def lambda_lr(make, scheduler_first=False):
    """torch's ``make(params)`` under ``LambdaLR(opt, decay)``, with ``scheduler.step()``
    called after each ``optimizer.step()`` (torch's documented order) or, the trap, before."""

    class Scheduled:
        def __init__(self, ps):
            self.opt = make(ps)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.opt, decay)

        def step(self):
            if scheduler_first:
                with warnings.catch_warnings():
                    # torch warns once that the scheduler ran first: that is this trap
                    warnings.simplefilter("ignore", UserWarning)
                    self.scheduler.step()
            self.opt.step()
            if not scheduler_first:
                self.scheduler.step()

    return Scheduled


def _optax_amsgrad_preset():
    return rules.preset("adam", "optax", lr=LR, amsgrad=True, amsgrad_bias_corrected=True)


# torch.optim and optax directly: the guide's conversion table.
PORTS = [
    Row("adam-defaults", Torch(lambda ps: torch.optim.Adam(ps, lr=1e-3)), Jax(lambda: optax.adam(1e-3))),
    Row(
        "adam-betas-eps",
        Torch(lambda ps: torch.optim.Adam(ps, lr=LR, betas=(0.8, 0.99), eps=1e-6)),
        Jax(lambda: optax.adam(LR, b1=0.8, b2=0.99, eps=1e-6)),
    ),
    Row(
        "adam-l2-weight-decay",
        Torch(lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=0.1)),
        Jax(lambda: optax.chain(optax.add_decayed_weights(0.1), optax.adam(LR))),
    ),
    Row(
        "adamw-weight-decay-spelled-out",
        Torch(lambda ps: torch.optim.AdamW(ps, lr=LR)),
        Jax(lambda: optax.adamw(LR, weight_decay=0.01)),
    ),
    Row("sgd", Torch(lambda ps: torch.optim.SGD(ps, lr=LR)), Jax(lambda: optax.sgd(LR))),
    Row(
        "sgd-momentum",
        Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9)),
        Jax(lambda: optax.sgd(LR, momentum=0.9)),
    ),
    Row(
        "sgd-nesterov",
        Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, nesterov=True)),
        Jax(lambda: optax.sgd(LR, momentum=0.9, nesterov=True)),
    ),
    Row(
        "sgd-l2-weight-decay",
        Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, weight_decay=0.1)),
        Jax(lambda: optax.chain(optax.add_decayed_weights(0.1), optax.sgd(LR, momentum=0.9))),
    ),
    Row(
        "adam-lambdalr-as-schedule",
        Torch(lambda_lr(lambda ps: torch.optim.Adam(ps, lr=LR))),
        Jax(lambda: optax.adam(schedule)),
    ),
    Row(
        "sgd-momentum-lambdalr-as-schedule",
        Torch(lambda_lr(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9))),
        Jax(lambda: optax.sgd(schedule, momentum=0.9)),
    ),
]

# One side ours: every setting either library has is exact in the other framework.
WITH_OURS = [
    Row(
        "torch-adam-in-jax",
        Torch(lambda ps: torch.optim.Adam(ps, lr=LR, betas=(0.8, 0.99), eps=1e-6)),
        Jax(lambda: impl_jax.adam(lr=LR, betas=(0.8, 0.99), eps=1e-6)),
    ),
    Row(
        "torch-adam-l2-in-jax",
        Torch(lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=0.1)),
        Jax(lambda: impl_jax.adam(lr=LR, weight_decay=0.1)),
    ),
    Row(
        "torch-adamw-defaults-in-jax",
        Torch(lambda ps: torch.optim.AdamW(ps, lr=LR)),
        Jax(lambda: impl_jax.adamw(lr=LR)),
    ),
    Row(
        "optax-adamw-defaults-in-torch",
        Torch(lambda ps: impl_torch.optimizer_for(rules.preset("adamw", "optax", lr=LR), ps)),
        Jax(lambda: optax.adamw(LR)),
    ),
    Row(
        "optax-adamw-preset-in-jax",
        Jax(lambda: impl_jax.transformation(rules.preset("adamw", "optax", lr=LR))),
        Jax(lambda: optax.adamw(LR)),
    ),
    Row(
        "torch-amsgrad-in-jax",
        Torch(lambda ps: torch.optim.Adam(ps, lr=LR, amsgrad=True)),
        Jax(lambda: impl_jax.adam(lr=LR, amsgrad=True)),
    ),
    Row(
        "optax-amsgrad-in-jax",
        Jax(lambda: impl_jax.transformation(_optax_amsgrad_preset())),
        Jax(lambda: optax.amsgrad(LR)),
    ),
    Row(
        "optax-amsgrad-in-torch",
        Torch(lambda ps: impl_torch.optimizer_for(_optax_amsgrad_preset(), ps)),
        Jax(lambda: optax.amsgrad(LR)),
    ),
    Row(
        "optax-nadam-in-torch",
        Torch(lambda ps: impl_torch.optimizer_for(rules.preset("adam", "optax", lr=LR, nesterov=True), ps)),
        Jax(lambda: optax.nadam(LR)),
    ),
    Row(
        # gradients of 1e-4: v ~ 1e-8, where eps_root = 1e-8 changes the root (the trap below)
        "optax-eps-root-in-torch",
        Torch(lambda ps: impl_torch.Adam(ps, lr=LR, eps_root=1e-8)),
        Jax(lambda: optax.adam(LR, eps_root=1e-8)),
        grad_scale=1e-4,
    ),
    Row(
        "torch-lambdalr-in-jax",
        Torch(lambda_lr(lambda ps: torch.optim.Adam(ps, lr=LR))),
        Jax(lambda: impl_jax.adam(lr=schedule)),
    ),
    Row(
        "torch-sgd-dampening-in-jax",
        Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, dampening=0.5)),
        Jax(lambda: impl_jax.sgd(lr=LR, momentum=0.9, dampening=0.5)),
        marks=(NEEDS_SGD,),
    ),
    Row(
        "optax-sgd-preset-in-jax",
        Jax(lambda: impl_jax.transformation(rules.preset("sgd", "optax", lr=LR, momentum=0.9, nesterov=True))),
        Jax(lambda: optax.sgd(LR, momentum=0.9, nesterov=True)),
        marks=(NEEDS_SGD,),
    ),
    Row(
        "optax-sgd-preset-in-torch",
        Torch(lambda ps: impl_torch.optimizer_for(rules.preset("sgd", "optax", lr=LR, momentum=0.9), ps)),
        Jax(lambda: optax.sgd(LR, momentum=0.9)),
        marks=(NEEDS_SGD,),
    ),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("row", _params(PORTS + WITH_OURS))
def test_equal(row, dtype):
    params, a, b = _trajectories(row, dtype)
    _assert_equal(params, a, b, dtype)


# (id, torch.optim factory, impl_torch factory): the same keywords, foreach=False on both.
BITWISE = [
    ("adam", lambda ps, m: m.Adam(ps, lr=LR, betas=(0.8, 0.99), eps=1e-6, foreach=False), ()),
    ("adam-l2", lambda ps, m: m.Adam(ps, lr=LR, weight_decay=0.1, foreach=False), ()),
    ("adam-amsgrad", lambda ps, m: m.Adam(ps, lr=LR, amsgrad=True, foreach=False), ()),
    ("adamw", lambda ps, m: m.AdamW(ps, lr=LR, foreach=False), ()),
    ("sgd-dampening", lambda ps, m: m.SGD(ps, lr=LR, momentum=0.9, dampening=0.5, foreach=False), (NEEDS_SGD,)),
    ("sgd-nesterov", lambda ps, m: m.SGD(ps, lr=LR, momentum=0.9, nesterov=True, foreach=False), (NEEDS_SGD,)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make", [pytest.param(m, id=i, marks=k) for i, m, k in BITWISE])
def test_ours_is_torch_optim_bitwise(make, dtype):
    params, grads = problem(steps=STEPS)
    theirs = torch_optim_trajectory(lambda ps: make(ps, torch.optim), params, grads, dtype)
    ours = torch_optim_trajectory(lambda ps: make(ps, impl_torch), params, grads, dtype)
    for k, (x, y) in enumerate(zip(ours, theirs, strict=True)):
        assert all(np.array_equal(p, q) for p, q in zip(x, y, strict=True)), f"step {k + 1}"


class Trap(NamedTuple):
    """A trap and what was measured (docs/porting.md quotes each figure)."""

    row: Row
    gap: float  # after the last step: the worst tensor's max |a - b| over its largest |b|
    of_movement: float  # the same max |a - b| over the largest distance b travelled from the start
    apart_from: int  # the first step whose parameters differ


TRAPS = [
    Trap(
        Row(
            "adam-l2-is-not-optax-adamw",
            Torch(lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=0.1)),
            Jax(lambda: optax.adamw(LR, weight_decay=0.1)),
        ),
        8.21e-3, 0.0905, 1,
    ),
    Trap(
        Row(
            "adamw-default-weight-decay-differs",
            Torch(lambda ps: torch.optim.AdamW(ps, lr=LR)),
            Jax(lambda: optax.adamw(LR)),
        ),
        1.95e-3, 0.036, 1,
    ),
    Trap(
        Row(
            "eps-root-has-no-torch-setting",
            Torch(lambda ps: torch.optim.Adam(ps, lr=LR)),
            Jax(lambda: optax.adam(LR, eps_root=1e-8)),
            grad_scale=1e-4,
        ),
        3.01e-2, 0.439, 1,
    ),
    Trap(
        Row(
            "amsgrad-keeps-a-different-maximum",
            Torch(lambda ps: torch.optim.Adam(ps, lr=LR, amsgrad=True)),
            Jax(lambda: optax.amsgrad(LR)),
        ),
        1.46e-2, 0.173, 2,
    ),
    Trap(
        Row(
            "amsgrad-uncorrected-maximum-is-not-torch",
            Torch(lambda ps: torch.optim.Adam(ps, lr=LR, amsgrad=True)),
            Jax(lambda: optax.amsgrad(LR, bias_correction_nu=False)),
        ),
        0.707, 0.925, 1,
    ),
    Trap(
        Row(
            "sgd-dampening-ignored",
            Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, dampening=0.5)),
            Jax(lambda: optax.sgd(LR, momentum=0.9)),
        ),
        0.202, 0.434, 2,
    ),
    Trap(
        Row(
            "sgd-dampening-as-scale",
            Torch(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, dampening=0.5)),
            Jax(lambda: optax.chain(optax.scale(0.5), optax.sgd(LR, momentum=0.9))),
        ),
        4.30e-2, 0.174, 1,
    ),
    Trap(
        Row(
            "schedule-torch-scheduler-stepped-first",
            Torch(lambda_lr(lambda ps: torch.optim.Adam(ps, lr=LR), scheduler_first=True)),
            Jax(lambda: optax.adam(schedule)),
        ),
        6.01e-3, 0.192, 1,
    ),
    Trap(
        Row(
            "schedule-optax-count-from-one",
            Torch(lambda_lr(lambda ps: torch.optim.Adam(ps, lr=LR))),
            Jax(lambda: optax.adam(lambda count: schedule(count + 1))),
        ),
        6.00e-3, 0.237, 1,
    ),
    Trap(
        Row(
            "sgd-momentum-lr-inside-the-trace",
            Torch(lambda_lr(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9))),
            Jax(lambda: optax.chain(optax.scale_by_learning_rate(schedule), optax.trace(decay=0.9))),
        ),
        0.100, 0.465, 2,
    ),
]


@pytest.mark.parametrize("trap", [pytest.param(t, id=t.row.id) for t in TRAPS])
def test_trap(trap):
    params, a, b = _trajectories(trap.row, "float64")
    gap = _gap(a[-1], b[-1])
    movement = max(float(np.max(np.abs(y - p0))) for y, p0 in zip(b[-1], params, strict=True))
    of_movement = max(float(np.max(np.abs(x - y))) for x, y in zip(a[-1], b[-1], strict=True)) / movement
    assert gap > TRAP_FACTOR * rules.tolerance("float32").rtol
    assert (gap, of_movement) == pytest.approx((trap.gap, trap.of_movement), rel=0.02)
    assert _first_step_apart(a, b) == trap.apart_from


def test_sgd_momentum_buffer_is_optax_trace_under_a_schedule():
    """Both libraries keep the momentum of the raw gradients and apply the lr after it:
    torch's ``momentum_buffer`` and optax.sgd's ``TraceState.trace`` hold the same numbers
    at every step, and so, under the same schedule, the parameters agree."""
    params, grads = problem(steps=STEPS)
    tensors = [torch.tensor(p) for p in params]
    opt = lambda_lr(lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9))(tensors)
    tx = optax.sgd(schedule, momentum=0.9)
    with x64("float64"):
        ps = [np.asarray(p) for p in params]
        state = tx.init(ps)
        for gs in grads:
            for t, g in zip(tensors, gs, strict=True):
                t.grad = torch.tensor(g)
            opt.step()
            updates, state = tx.update(gs, state, ps)
            ps = optax.apply_updates(ps, updates)
            trace = state[0].trace
            for t, p, buf in zip(tensors, ps, trace, strict=True):
                torch_buf = opt.opt.state[t]["momentum_buffer"].numpy()
                assert _gap([torch_buf], [np.asarray(buf)]) < EXACT_IN_FP64
                assert _gap([t.numpy()], [np.asarray(p)]) < EXACT_IN_FP64


def test_torch_dampening_skips_the_first_step():
    """torch.optim.SGD puts the first gradient into the buffer undamped: after one step,
    ``dampening=0.5`` and no dampening are the same update (and optax.sgd's)."""
    params, grads = problem(steps=1)
    damped = torch_optim_trajectory(
        lambda ps: torch.optim.SGD(ps, lr=LR, momentum=0.9, dampening=0.5), params, grads, "float64")
    undamped = optax_trajectory(optax.sgd(LR, momentum=0.9), params, grads, "float64")
    assert _gap(damped[0], undamped[0]) < EXACT_IN_FP64
