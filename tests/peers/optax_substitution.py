"""A pytest plugin, loaded (``-p tests.peers.optax_substitution``) into a separate pytest
run over the test modules shipped inside the installed optax wheel: it puts impl_jax's
rules, under the ``optax`` preset, in place of optax's Adagrad, Adadelta and RMSprop
before those modules are imported, keeps only the cases that touch these rules, and marks
each deliberate difference as a strict expected failure with its reason.

Nothing of optax's tests is copied: pytest collects them from the installed package.
The outcomes are written as JSON to ``$ADAPTBENCH_OPTAX_REPORT`` for
tests/peers/test_optax_suite.py. Run by hand (from the repository root)::

    ADAPTBENCH_OPTAX_REPORT=/tmp/o.json python -m pytest -c /dev/null -p no:cacheprovider \
        -p tests.peers.optax_substitution $(python -c "import optax, os; print(os.path.dirname(optax.__file__))")/_src/alias_test.py
"""

import json
import os

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
# module defines a substitute of each, with optax's signature, and of optax's transforms
# that compute these rules without a learning rate.
_ALIASES = tuple(peer_name(name, "optax") for name in rule_names("optax"))
_TRANSFORMS = ("scale_by_rss", "scale_by_rms", "scale_by_stddev", "scale_by_adadelta")
SUBSTITUTES = {alias: _ALIASES, transform: _TRANSFORMS, optax: _ALIASES + _TRANSFORMS}

# What a case must mention (its name, or its parameters' repr) to touch these rules.
_TOUCHES = _ALIASES + ("scale_by_rss", "scale_by_rms", "stddev", "rms_match_adam")
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
        touches = any(w in text for w in _TOUCHES) or item.name in _ALSO
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
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
