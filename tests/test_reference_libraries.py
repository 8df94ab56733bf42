"""The porting guide, proven: which torch.optim and optax settings compute the same update.

Each mapping in the README's table is a test here; each difference the table states is
demonstrated here on the installed versions. Equalities are checked in float64 (where
only rounding could differ, 1e-12 relative) and in float32 (rules.tolerance).
"""

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import impl_jax  # noqa: E402
import impl_torch  # noqa: E402
from adaptbench import rules  # noqa: E402
from tests.peer_lookup import optax_factory, rule_names, torch_class  # noqa: E402
from tests.reference_libraries import (  # noqa: E402
    max_relative_difference,
    optax_trajectory,
    problem,
    torch_optim_trajectory,
)

EXACT_IN_FP64 = 1e-12


def _assert_same(a, b, dtype):
    if np.dtype(dtype) == np.float64:
        assert max_relative_difference(a, b) < EXACT_IN_FP64
    else:
        tol = rules.tolerance(dtype)
        for step_a, step_b in zip(a, b, strict=True):
            for x, y in zip(step_a, step_b, strict=True):
                np.testing.assert_allclose(x, y, rtol=tol.rtol, atol=tol.atol)


# (id, torch.optim factory, equivalent optax transformation)
MAPPINGS = [
    (
        "rmsprop-eps-outside",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.99, eps=1e-8),
        optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False),
    ),
    (
        "rmsprop-centered",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-3, centered=True),
        optax.rmsprop(1e-2, decay=0.9, eps=1e-3, eps_in_sqrt=False, centered=True),
    ),
    (
        "rmsprop-momentum-constant-lr",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-3, momentum=0.9),
        optax.rmsprop(1e-2, decay=0.9, eps=1e-3, eps_in_sqrt=False, momentum=0.9),
    ),
    (
        "rmsprop-weight-decay",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-3, weight_decay=0.1),
        optax.chain(optax.add_decayed_weights(0.1), optax.rmsprop(1e-2, decay=0.9, eps=1e-3, eps_in_sqrt=False)),
    ),
    (
        "rmsprop-maximize",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-3, maximize=True),
        optax.chain(optax.scale(-1.0), optax.rmsprop(1e-2, decay=0.9, eps=1e-3, eps_in_sqrt=False)),
    ),
    (
        "rmsprop-momentum-centered",
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9, centered=True),
        optax.rmsprop(1e-3, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=True, momentum=0.9),
    ),
    (
        "adadelta-explicit-lr",
        lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9, eps=1e-6),
        optax.adadelta(learning_rate=1.0, rho=0.9, eps=1e-6),
    ),
    (
        "adadelta-weight-decay",
        lambda ps: torch.optim.Adadelta(ps, lr=0.5, rho=0.95, eps=1e-6, weight_decay=0.1),
        optax.adadelta(learning_rate=0.5, rho=0.95, eps=1e-6, weight_decay=0.1),
    ),
    (
        "adagrad-eps-zero",
        lambda ps: torch.optim.Adagrad(ps, lr=1e-2, eps=0.0, initial_accumulator_value=0.1),
        optax.adagrad(1e-2, initial_accumulator_value=0.1, eps=0.0),
    ),
    (
        "adagrad-weight-decay",
        lambda ps: torch.optim.Adagrad(ps, lr=1e-2, eps=0.0, initial_accumulator_value=0.1, weight_decay=0.1),
        optax.chain(optax.add_decayed_weights(0.1), optax.adagrad(1e-2, initial_accumulator_value=0.1, eps=0.0)),
    ),
    (
        "adagrad-lr-decay-as-schedule",
        lambda ps: torch.optim.Adagrad(ps, lr=1e-2, lr_decay=0.1, eps=0.0, initial_accumulator_value=0.1),
        # torch's clr = lr / (1 + (t - 1) * lr_decay); optax evaluates schedules at count = t - 1.
        optax.adagrad(lambda count: 1e-2 / (1 + count * 0.1), initial_accumulator_value=0.1, eps=0.0),
    ),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("torch_factory,optax_transform", [m[1:] for m in MAPPINGS], ids=[m[0] for m in MAPPINGS])
def test_torch_optim_and_optax_agree_under_the_mapping(torch_factory, optax_transform, dtype):
    params, grads = problem(steps=30)
    _assert_same(
        torch_optim_trajectory(torch_factory, params, grads, dtype),
        optax_trajectory(optax_transform, params, grads, dtype),
        dtype,
    )


def _relative_gap(torch_factory, optax_transform, **problem_kwargs):
    params, grads = problem(**problem_kwargs)
    return max_relative_difference(
        torch_optim_trajectory(torch_factory, params, grads, "float64"),
        optax_trajectory(optax_transform, params, grads, "float64"),
    )


def test_adagrad_with_eps_cannot_be_mapped():
    """torch puts eps outside the root, optax inside: no setting of either closes the gap.

    With small gradients (|g| ~ 1e-4, so s ~ 1e-8) and the same eps = 1e-7, optax's
    sqrt(s + eps) is dominated by eps, torch's sqrt(s) + eps is not.
    """
    gap = _relative_gap(
        lambda ps: torch.optim.Adagrad(ps, lr=1e-2, eps=1e-7, initial_accumulator_value=0.0),
        optax.adagrad(1e-2, initial_accumulator_value=0.0, eps=1e-7),
        grad_scale=1e-4,
        steps=5,
    )
    assert gap > 1e-6, "the eps conventions differ, so the trajectories must too"


# (id, grad scale, torch.optim Adagrad's defaults against an optax.adagrad, measured gap as a
# fraction of the parameters' largest movement over 30 float64 steps). The nearest setting
# puts eps**2 inside the root: sqrt(s + eps**2) and sqrt(s) + eps agree as s -> 0 and as
# s >> eps**2; they part where s ~ eps**2, i.e. for gradients near eps.
NEAREST_ADAGRAD = [
    ("eps-squared-inside-unit-grads", 1.0, 1e-20, 2.0e-10),
    ("eps-squared-inside-grads-1e-4", 1e-4, 1e-20, 2.0e-6),
    ("eps-squared-inside-grads-1e-8", 1e-8, 1e-20, 1.7e-2),
    ("same-eps-inside-unit-grads", 1.0, 1e-10, 8.8e-10),
    ("same-eps-inside-grads-1e-4", 1e-4, 1e-10, 6.0e-2),
    ("optax-default-eps-unit-grads", 1.0, 1e-7, 1.07e-6),
    ("optax-default-eps-grads-1e-4", 1e-4, 1e-7, 0.43),
]


@pytest.mark.parametrize("grad_scale,eps_inside,measured", [m[1:] for m in NEAREST_ADAGRAD],
                         ids=[m[0] for m in NEAREST_ADAGRAD])
def test_nearest_optax_setting_for_torch_adagrad(grad_scale, eps_inside, measured):
    """The README's "nearest setting" numbers for torch.optim.Adagrad's defaults in optax."""
    params, grads = problem(steps=30, grad_scale=grad_scale)
    a = torch_optim_trajectory(lambda ps: torch.optim.Adagrad(ps, lr=1e-2), params, grads, "float64")
    b = optax_trajectory(optax.adagrad(1e-2, initial_accumulator_value=0.0, eps=eps_inside), params, grads, "float64")
    movement = max(float(np.max(np.abs(x - p0))) for x, p0 in zip(a[-1], params, strict=True))
    gap = max(float(np.max(np.abs(x - y))) for sa, sb in zip(a, b, strict=True) for x, y in zip(sa, sb, strict=True))
    assert gap / movement == pytest.approx(measured, rel=0.1)


def test_rmsprop_eps_inside_the_root_has_no_torch_setting():
    """optax's default eps_in_sqrt=True differs from every torch.optim.RMSprop."""
    gap = _relative_gap(
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-8),
        optax.rmsprop(1e-2, decay=0.9, eps=1e-8),
        grad_scale=1e-4,
        steps=5,
    )
    assert gap > 1e-6


def test_rmsprop_defaults_differ_in_decay():
    """torch's alpha=0.99 versus optax's decay=0.9: porting with defaults changes the rule."""
    gap = _relative_gap(
        lambda ps: torch.optim.RMSprop(ps, lr=1e-2),
        optax.rmsprop(1e-2, eps_in_sqrt=False),
    )
    assert gap > 1e-3


def test_rmsprop_momentum_differs_with_a_schedule():
    """torch traces q then scales by lr_t; optax traces -lr_t * q: equal only for constant lr."""
    def schedule(count):
        return 1e-2 / (1 + count)

    params, grads = problem(steps=10)
    class Scheduled:
        """torch.optim.RMSprop whose lr follows ``schedule``, set before each step."""

        def __init__(self, ps):
            self.opt = torch.optim.RMSprop(ps, lr=schedule(0), alpha=0.9, eps=1e-3, momentum=0.9)
            self.k = 0

        def step(self):
            self.opt.param_groups[0]["lr"] = schedule(self.k)
            self.opt.step()
            self.k += 1

    a = torch_optim_trajectory(Scheduled, params, grads, "float64")
    b = optax_trajectory(
        optax.rmsprop(schedule, decay=0.9, eps=1e-3, eps_in_sqrt=False, momentum=0.9), params, grads, "float64"
    )
    assert max_relative_difference(a[:1], b[:1]) < EXACT_IN_FP64  # same first step
    assert max_relative_difference(a, b) > 1e-6


def test_optax_adagrad_masks_where_torch_divides_zero_by_zero():
    """Zero accumulator, zero gradient, eps = 0: torch.optim yields NaN, optax yields 0."""
    params = [np.array([1.0, 1.0])]
    grads = [[np.array([0.0, 1.0])]]
    t = torch_optim_trajectory(lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=0.0), params, grads, "float32")
    o = optax_trajectory(optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0), params, grads, "float32")
    assert np.isnan(t[0][0][0]) and o[0][0][0] == 1.0
    assert t[0][0][1] == pytest.approx(o[0][0][1])


@pytest.mark.parametrize("name", rule_names("torch", "optax"))
def test_presets_are_the_libraries_defaults(name):
    """The `torch` preset is torch.optim's defaults and the `optax` preset optax's (lr given)."""
    params, grads = problem(steps=10)
    from adaptbench.rules import reference

    for convention, run in [
        ("torch", lambda: torch_optim_trajectory(torch_class(name), params, grads, "float64")),
        ("optax", lambda: optax_trajectory(optax_factory(name)(rules.preset(name, "optax").lr), params, grads,
                                           "float64")),
    ]:
        rule = rules.preset(name, convention)
        states = [reference.init_state(rule, p) for p in params]
        ps = list(params)
        oracle = []
        for gs in grads:
            stepped = [reference.step(rule, p, g, s) for p, g, s in zip(ps, gs, states)]
            ps, states = [x[0] for x in stepped], [x[1] for x in stepped]
            oracle.append(ps)
        assert max_relative_difference(run(), oracle) < EXACT_IN_FP64, convention


def _scheduled(torch_factory, schedule):
    """A torch optimizer whose lr follows ``schedule(k)``, set before step k."""

    class Scheduled:
        def __init__(self, ps):
            self.opt = torch_factory(ps, schedule(0))
            self.k = 0

        def step(self):
            self.opt.param_groups[0]["lr"] = schedule(self.k)
            self.opt.step()
            self.k += 1

    return Scheduled


def _inverse_time(count):
    return 1e-2 / (1 + count)


# (id, torch optimizer factory, optax-compatible transformation): the README's "exact in
# both directions with adaptbench" table; each pair crosses frameworks with one side ours.
EXACT_WITH_OURS = [
    ("torch-adagrad-defaults-in-jax", lambda ps: torch.optim.Adagrad(ps, lr=1e-2), lambda: impl_jax.adagrad(lr=1e-2)),
    (
        "torch-rmsprop-momentum-schedule-in-jax",
        _scheduled(lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, momentum=0.9), _inverse_time),
        lambda: impl_jax.rmsprop(lr=_inverse_time, momentum=0.9),
    ),
    (
        "optax-adagrad-defaults-in-torch",
        lambda ps: impl_torch.Adagrad(ps, lr=1e-2, eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1,
                                      mask_zero_accumulator=True),
        lambda: optax.adagrad(1e-2),
    ),
    (
        "optax-rmsprop-defaults-in-torch",
        lambda ps: impl_torch.RMSprop(ps, lr=1e-2, alpha=0.9, eps=1e-8, eps_in_sqrt=True),
        lambda: optax.rmsprop(1e-2),
    ),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("torch_factory,transform", [m[1:] for m in EXACT_WITH_OURS],
                         ids=[m[0] for m in EXACT_WITH_OURS])
def test_exact_port_with_our_implementations(torch_factory, transform, dtype):
    params, grads = problem(steps=30, grad_scale=1e-4)
    _assert_same(
        torch_optim_trajectory(torch_factory, params, grads, dtype),
        optax_trajectory(transform(), params, grads, dtype),
        dtype,
    )
