"""Run by tests/test_jax_sharded.py in a fresh process with 8 host devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before jax is
imported, hence a subprocess (``python -m tests.jax_sharded_worker``). For each mesh mode
(automatic and explicit axes) and rule, the facts the tests assert on are printed as one
JSON object on the last line of stdout: shardings of the state from ``init`` (eager and
under ``jit``), of params and state after ``make_step``, whether the inputs were donated,
how many times the step compiled, and whether params and state equal the single-device
run bitwise.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import impl_jax
from adaptbench import rules

STEPS = 3
MODES = ("auto", "explicit")
# Options that create every moment of each rule and use the step counter in the math.
RULES = {
    "adagrad": rules.Adagrad(lr_decay=0.01, weight_decay=0.01),
    "adadelta": rules.Adadelta(weight_decay=0.01),
    "rmsprop": rules.RMSprop(centered=True, momentum=0.9),
    "adam": rules.Adam(amsgrad=True, weight_decay=0.01),
    "adamw": rules.AdamW(amsgrad=True),
    "sgd": rules.SGD(momentum=0.9, dampening=0.1, weight_decay=0.01),
}
# Leaf shapes and their PartitionSpecs on a (4, 2) mesh with axes ("a", "b"); specs are
# written in full (one entry per dimension), the form jit returns in explicit mode.
LEAVES = {
    "w": ((16, 12), P("a", "b")),
    "r": ((4, 8), P(None, "a")),
    "b": ((8,), P("b")),
    "s": ((), P()),
}


def _arrays(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape).astype(np.float32) for k, (shape, _) in LEAVES.items()}


def _equivalent(a, b) -> bool:
    return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def _run(rule, params, grads, context):
    with context():
        step = impl_jax.make_step(rule)
        state = impl_jax.init(rule, params)
        first_params, first_state = params, state
        for g in grads:
            params, state = step(params, state, g)
        donated = all(x.is_deleted() for x in jax.tree.leaves((first_params, first_state)))
        return step, state, params, donated


def case(mode: str, name: str) -> dict:
    axis_type = AxisType.Explicit if mode == "explicit" else AxisType.Auto
    mesh = jax.make_mesh((4, 2), ("a", "b"), axis_types=(axis_type, axis_type))
    # Explicit axes need the mesh in context under jit; automatic axes do not.
    context = (lambda: jax.set_mesh(mesh)) if mode == "explicit" else _no_context
    shardings = {k: NamedSharding(mesh, spec) for k, (_, spec) in LEAVES.items()}
    rule = RULES[name]
    host_params = _arrays(0)
    host_grads = [_arrays(1 + k) for k in range(STEPS)]

    def sharded(tree):
        return {k: jax.device_put(v, shardings[k]) for k, v in tree.items()}

    params = sharded(host_params)
    with context():
        eager_state = impl_jax.init(rule, params)
        jit_state = jax.jit(lambda p: impl_jax.init(rule, p))(params)
    moments = [m for m in eager_state[1:] if m is not None]
    jit_moments = [m for m in jit_state[1:] if m is not None]
    replicated = NamedSharding(mesh, P())

    step, state, out_params, donated = _run(rule, sharded(host_params), [sharded(g) for g in host_grads], context)

    device = jax.devices()[0]
    single = lambda tree: jax.device_put(tree, device)  # noqa: E731
    _, ref_state, ref_params, _ = _run(rule, single(host_params), [single(g) for g in host_grads], _no_context)

    out_moments = [m for m in state[1:] if m is not None]
    return {
        "init_sharded": all(_equivalent(m[k], params[k]) for m in moments for k in params),
        "jit_init_sharded": all(_equivalent(m[k], params[k]) for m in jit_moments for k in params),
        "init_step_replicated": eager_state.step.sharding.is_equivalent_to(replicated, 0)
        and jit_state.step.sharding.is_equivalent_to(replicated, 0),
        "params_sharded": all(out_params[k].sharding.is_equivalent_to(shardings[k], out_params[k].ndim) for k in params),
        "state_sharded": all(
            m[k].sharding.is_equivalent_to(shardings[k], m[k].ndim) for m in out_moments for k in params
        )
        and state.step.sharding.is_equivalent_to(replicated, 0),
        "donated": donated,
        "compiles": step._cache_size(),
        "bitwise": all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves((out_params, state)), jax.tree.leaves((ref_params, ref_state)))
        ),
        "moved": not np.array_equal(np.asarray(out_params["w"]), host_params["w"]),
        "steps": int(state.step),
    }


class _no_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> None:
    if len(jax.devices()) != 8:
        raise SystemExit(
            f"expected 8 host devices, got {len(jax.devices())}: XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}"
        )
    results = {f"{mode}/{name}": case(mode, name) for mode in MODES for name in RULES}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
