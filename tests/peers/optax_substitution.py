"""A pytest plugin, loaded (``-p tests.peers.optax_substitution``) into a separate pytest
run over the test modules shipped inside the installed optax wheel: it puts impl_jax's
rules, under the ``optax`` preset, in place of optax's Adagrad, Adadelta and RMSprop
before those modules are imported, keeps only the cases that touch these rules, and marks
each deliberate difference as a strict expected failure with its reason.

Nothing of optax's tests is copied: pytest collects them from the installed package.
The outcomes are written as JSON to ``$ADAPTBENCH_OPTAX_REPORT`` for
tests/peers/test_optax_suite.py. Run by hand (from the repository root)::

    O=$(python -c "import optax, os; print(os.path.dirname(optax.__file__))")
    ADAPTBENCH_OPTAX_REPORT=/tmp/o.json python -m pytest -c /dev/null --confcutdir $O/.. -p no:cacheprovider \
        -p tests.peers.optax_substitution $O/_src/alias_test.py
"""

import json
import os
import re

import optax
import pytest
from optax._src import alias, transform

from adaptbench import rules
from tests.peer_lookup import jax_factory, peer_name, rule_names


def _ours(name: str, **values) -> optax.GradientTransformationExtraArgs:
    """impl_jax's factory with the ``optax`` preset's switches and ``values`` (numbers,
    schedules or traced scalars: the factory takes what ``inject_hyperparams`` passes)."""
    return jax_factory(name)(**{**rules.preset(name, "optax").as_dict(), **values})


def _undirected(tx) -> optax.GradientTransformationExtraArgs:
    """optax's ``scale_by_*`` return ``+g / root`` (no learning rate, no sign); ours with
    lr = 1 returns ``-g / root``, so flip the sign back."""
    return optax.chain(tx, optax.scale(-1.0))


# optax annotates learning_rate as a ScalarOrSchedule, and its tests read the annotation
# (evaluated: no ``from __future__ import annotations`` in this module) to decide whether
# to try a schedule; ours accept schedules too.


def adagrad(learning_rate: optax.ScalarOrSchedule, initial_accumulator_value=0.1, eps=1e-7):
    return _ours("adagrad", lr=learning_rate, initial_accumulator_value=initial_accumulator_value, eps=eps)


def adadelta(learning_rate: optax.ScalarOrSchedule | None = None, rho=0.9, eps=1e-6, weight_decay=0.0, weight_decay_mask=None):
    if weight_decay_mask is not None:
        raise TypeError("weight_decay_mask has no counterpart in impl_jax.adadelta")
    # optax leaves the update unscaled (the ascent direction) when learning_rate is None;
    # the preset reads it as the paper's lr = 1.
    return _ours("adadelta", lr=1.0 if learning_rate is None else learning_rate, rho=rho, eps=eps, weight_decay=weight_decay)


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=None,
    nesterov=False,
    bias_correction=False,
):
    return _ours(
        "rmsprop",
        lr=learning_rate,
        alpha=decay,
        eps=eps,
        initial_scale=initial_scale,
        eps_in_sqrt=eps_in_sqrt,
        centered=centered,
        momentum=0.0 if momentum is None else momentum,
        nesterov=nesterov,
        bias_correction=bias_correction,
    )


def _refuse(**given):
    """A ``TypeError`` naming each option of optax's signature that ours has no counterpart
    for (``name=(value, optax's default)``) when it is set to other than the default; the
    cases that set one are named expected failures."""
    named = [f"{k}={v!r}" for k, (v, default) in given.items() if v is not default]
    if named:
        raise TypeError(f"{', '.join(named)}: no counterpart in impl_jax")


def adam(learning_rate: optax.ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, *,
         nesterov=False):
    _refuse(mu_dtype=(mu_dtype, None))
    return _ours("adam", lr=learning_rate, beta1=b1, beta2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov)


def adamw(learning_rate: optax.ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None,
          weight_decay=1e-4, mask=None, *, nesterov=False):
    _refuse(mu_dtype=(mu_dtype, None), mask=(mask, None))
    return _ours("adamw", lr=learning_rate, beta1=b1, beta2=b2, eps=eps, eps_root=eps_root,
                 weight_decay=weight_decay, nesterov=nesterov)


def amsgrad(learning_rate: optax.ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None,
            bias_correction_mu=True, bias_correction_nu=True):
    # optax.amsgrad keeps the maximum of the bias-corrected second moment (the preset's
    # amsgrad_bias_corrected); without a correction it is a rule rules.Adam does not express.
    _refuse(mu_dtype=(mu_dtype, None), bias_correction_mu=(bias_correction_mu, True),
            bias_correction_nu=(bias_correction_nu, True))
    return _ours("adam", lr=learning_rate, beta1=b1, beta2=b2, eps=eps, eps_root=eps_root,
                 amsgrad=True, amsgrad_bias_corrected=True)


def sgd(learning_rate: optax.ScalarOrSchedule, momentum=None, nesterov=False, accumulator_dtype=None):
    _refuse(accumulator_dtype=(accumulator_dtype, None))
    # optax ignores nesterov without a momentum trace; torch.optim (and rules.SGD) refuse it
    return _ours("sgd", lr=learning_rate, momentum=0.0 if momentum is None else momentum,
                 nesterov=nesterov and momentum is not None)


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, *, nesterov=False):
    return _undirected(adam(1.0, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov))


def scale_by_amsgrad(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, bias_correction_mu=True,
                     bias_correction_nu=True):
    return _undirected(amsgrad(1.0, b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu))


def scale_by_rss(initial_accumulator_value=0.1, eps=1e-7):
    return _undirected(adagrad(1.0, initial_accumulator_value, eps))


def scale_by_rms(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False):
    return _undirected(rmsprop(1.0, decay, eps, initial_scale, eps_in_sqrt, bias_correction=bias_correction))


def scale_by_stddev(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False):
    return _undirected(
        rmsprop(1.0, decay, eps, initial_scale, eps_in_sqrt, centered=True, bias_correction=bias_correction)
    )


def scale_by_adadelta(rho=0.9, eps=1e-6):
    return _undirected(adadelta(1.0, rho, eps))


# optax's factory of each registered rule with an optax peer (its PEERS["optax"]); this
# module defines a substitute of each, with optax's signature, and of optax's aliases and
# transforms that compute these rules under another name (amsgrad: rules.Adam's optax
# maximum) or without a learning rate.
_ALIASES = tuple(peer_name(name, "optax") for name in rule_names("optax")) + ("amsgrad",)
_TRANSFORMS = ("scale_by_rss", "scale_by_rms", "scale_by_stddev", "scale_by_adadelta", "scale_by_adam",
               "scale_by_amsgrad")
SUBSTITUTES = {alias: _ALIASES, transform: _TRANSFORMS, optax: _ALIASES + _TRANSFORMS}

# What a case must mention (its name, or its parameters' repr) to touch these rules.
# Whole words, "_" counting as a separator: "adam" must not select nadam, radam or adamax
# (optax's own code), while "test_adam" and optimistic_adam (built on scale_by_adam) stay.
# optax's noisy_sgd and sign_sgd are their own chains, sgd's name without its code
# (polyak_sgd calls sgd, so it stays).
_TOUCHES = re.compile(
    r"(?<![a-z0-9])(?<!noisy_)(?<!sign_)("
    + "|".join(_ALIASES + ("scale_by_rss", "scale_by_rms", "stddev", "rms_match_adam")) + r")(?![a-z0-9])"
)
# Cases that use these rules without naming them.
_ALSO = {"test_map_params_to_none"}

# Selected out for time (the suite must stay within ~2 minutes of `make test` on 2 cores):
# (test name prefix, words in the parameters). What stays covers every rule, option set and
# dtype family: convergence on the parabola (float32 and complex64; the Rosenbrock
# runs repeat the same 10,000 steps), state stability in bfloat16, float64 and both
# complex dtypes (float16/float32 repeat bfloat16's and float64's path), gradient
# accumulation in bfloat16.
FOR_TIME = [
    ("test_optimization", ("_setup_rosenbrock",)),
    ("test_state_shape_dtype_shard_stability", ("jax.numpy.float16",)),
    ("test_state_shape_dtype_shard_stability", ("jax.numpy.float32",)),
    ("test_gradient_accumulation", ("dtype='float32'",)),
]

# Deliberate differences: (module file, test name prefix, words in the parameters) -> reason.
DIFFERENCES = [
    (
        "_state_utils_test.py",
        "test_map_params_to_none",
        (),
        "state layout: impl_jax's AdagradState(step, sum) (torch.optim's names and a step "
        "counter) where optax has ScaleByRssState(sum_of_squares) and an EmptyState",
    ),
    (
        "_state_utils_test.py",
        "test_adam",
        (),
        "state layout: impl_jax's AdamState(step, exp_avg, exp_avg_sq, max_exp_avg_sq) "
        "(torch.optim's names) where optax has ScaleByAdamState(count, mu, nu) and an EmptyState",
    ),
    (
        "alias_test.py",
        "test_explicit_dtype",
        ("state_dtype=None",),
        "state layout: the test reads the first moment as optax's 'mu' (Adam) or 'trace' (SGD "
        "with momentum); impl_jax's are 'exp_avg' and 'momentum_buffer', torch.optim's names",
    ),
    *(
        (
            "alias_test.py",
            "test_explicit_dtype",
            (f"state_dtype='{dtype}'",),
            "mu_dtype (Adam) and accumulator_dtype (SGD): no counterpart in impl_jax (the moments "
            "take the parameters' dtype, as in torch.optim); the substitute raises TypeError naming it",
        )
        for dtype in ("bfloat16", "float32", "complex64")
    ),
    (
        "transform_test.py",
        "test_rms_match_adam",
        (),
        "bias correction: impl_jax's Adam computes 1 - beta2**t as torch.optim does, accurate "
        "to the working precision; optax (and so the rmsprop substitute's bias_correction, "
        "which follows optax.scale_by_rms) computes it in float32 from beta2 rounded to float32 "
        "(1 - 0.999f = 9.99987e-4): after the test's 5 steps 7e-6 apart, over its 1e-6 rtol",
    ),
]


def _substituting() -> bool:
    """``ADAPTBENCH_OPTAX_PEER=1`` runs the same selection on optax itself (the
    comparison column of docs/compatibility-optax.md)."""
    return os.environ.get("ADAPTBENCH_OPTAX_PEER") != "1"


def pytest_configure(config):
    if _substituting():
        for module, names in SUBSTITUTES.items():
            for name in names:
                setattr(module, name, globals()[name])
    config._adaptbench_outcomes = {}


def _key(item) -> str:
    return item.nodeid.split("::", 1)[0].rsplit("optax/", 1)[-1] + "::" + item.nodeid.split("::", 1)[1]


def _describe(item) -> str:
    return f"{item.name} {getattr(item.obj, '__x_params_repr__', '')}"


def pytest_collection_modifyitems(config, items):
    full = os.environ.get("ADAPTBENCH_OPTAX_ALL") == "1"  # every case, for the docs' numbers
    keep, drop = [], []
    for item in items:
        text = _describe(item)
        touches = bool(_TOUCHES.search(text)) or item.name in _ALSO
        for_time = not full and any(item.name.startswith(p) and all(w in text for w in ws) for p, ws in FOR_TIME)
        (keep if touches and not for_time else drop).append(item)
        if touches and for_time:
            config._adaptbench_outcomes[_key(item)] = {"outcome": "not selected (time)", "params": text}
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    for item in keep if _substituting() else ():
        for module, prefix, words, reason in DIFFERENCES:
            if item.path.name == module and item.name.startswith(prefix) and all(w in _describe(item) for w in words):
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


# Some of optax's tests check in subtests (``self.subTest``): each subtest's report is made
# while the test function runs, the test's own after it returns. A strict expected failure
# is the test's as a whole: pytest would judge each subtest against it (a passing one an
# XPASS(strict)) and the test itself apart from its subtests (so a case whose only failure
# is a subtest's would be an XPASS(strict) too).
_IN_CALL = pytest.StashKey[bool]()
_SUBTEST_FAILED = pytest.StashKey[str]()
_XPASS = "[XPASS(strict)] "


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    item.stash[_IN_CALL] = True
    try:
        return (yield)
    finally:
        item.stash[_IN_CALL] = False


def _subtest_report(item, report):
    if report.failed and str(report.longrepr).startswith(_XPASS):
        report.outcome, report.longrepr = "passed", None  # a passing subtest of an expected failure
    elif hasattr(report, "wasxfail"):
        item.stash[_SUBTEST_FAILED] = "expected"
    elif report.failed:
        item.stash[_SUBTEST_FAILED] = str(report.longrepr)
    return report


def _judge_with_subtests(item, report) -> None:
    failed = item.stash.get(_SUBTEST_FAILED, None)
    if failed == "expected" and report.failed and str(report.longrepr).startswith(_XPASS):
        report.outcome, report.wasxfail = "skipped", str(report.longrepr)[len(_XPASS):]
        report.longrepr = None
    elif failed not in (None, "expected") and report.passed:
        report.outcome, report.longrepr = "failed", f"a subtest failed:\n{failed}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if item.stash.get(_IN_CALL, False):
        return _subtest_report(item, report)
    if report.when == "call":
        _judge_with_subtests(item, report)
    outcome = None
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
    if outcome is not None:
        item.config._adaptbench_outcomes[_key(item)] = {
            "outcome": outcome,
            "params": _describe(item),
            "seconds": round(report.duration, 2),
            "message": str(report.longrepr)[-2000:] if report.failed else "",
        }
    return report


def pytest_unconfigure(config):
    path = os.environ.get("ADAPTBENCH_OPTAX_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(config._adaptbench_outcomes, f, indent=1, sort_keys=True)
