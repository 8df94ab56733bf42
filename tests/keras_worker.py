"""Run Keras 3 optimizers on given arrays, in a process of their own (tests/test_reference_keras.py).

Keras reads its backend (``KERAS_BACKEND``) once, at import, so each backend needs its own
process; ``import keras`` takes seconds, so one process runs every case of its backend::

    KERAS_BACKEND=jax python -m tests.keras_worker cases.json problem.npz out.npz

``cases.json``: a list of ``{"id", "optimizer", "kwargs", "schedule", "grad_scale",
"dtypes"}``, where ``optimizer`` names a class of ``keras.optimizers``, ``schedule`` (or
null) is ``{"name", "kwargs"}`` of a class of ``keras.optimizers.schedules`` passed as
``learning_rate``, and the case's gradients are the problem's times ``grad_scale``.
``problem.npz``: ``param_<i>`` and ``grad_<k>_<i>`` (float64). ``out.npz``: for every
case, dtype and mode, ``<id>|<dtype>|<mode>`` holding the params after each step, each
step's leaves flattened and concatenated (``steps x elements``, float64), and
``signatures`` (JSON: the keyword names of each optimizer a case or a rule's Keras peer
names).

Modes: ``apply`` (``optimizer.apply`` on ``keras.Variable``s, eager) on every backend;
on JAX also ``stateless`` (``stateless_apply`` under ``jax.jit``, params and optimizer
variables donated), the way a JAX training step calls it.

float64 needs two switches around every Keras call: ``keras.config.set_floatx`` (the
optimizer's learning-rate variable is created in floatx, float32 by default, which rounds
lr to float32 before it is cast to the params' dtype) and, on JAX, ``jax.enable_x64``
(without it float64 variables silently become float32, with only a warning).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys

import numpy as np

from tests.peer_lookup import peer_name, rule_names


def _load_problem(path: str):
    data = np.load(path)
    n_params = len([k for k in data.files if k.startswith("param_")])
    n_steps = len([k for k in data.files if k.startswith("grad_") and k.endswith("_0")])
    params = [data[f"param_{i}"] for i in range(n_params)]
    grads = [[data[f"grad_{k}_{i}"] for i in range(n_params)] for k in range(n_steps)]
    return params, grads


@contextlib.contextmanager
def _precision(keras, dtype: str):
    """floatx (and JAX's x64 mode) as ``dtype`` needs, restored afterwards."""
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        if dtype == "float64" and keras.backend.backend() == "jax":
            import jax

            with jax.enable_x64(True):
                yield
        else:
            yield
    finally:
        keras.config.set_floatx(previous)


def _optimizer(keras, case: dict):
    kwargs = dict(case["kwargs"])
    if case.get("schedule"):
        schedule = getattr(keras.optimizers.schedules, case["schedule"]["name"])
        kwargs["learning_rate"] = schedule(**case["schedule"]["kwargs"])
    return getattr(keras.optimizers, case["optimizer"])(**kwargs)


def _flat(keras, values) -> np.ndarray:
    return np.concatenate([np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64).ravel() for v in values])


def run_apply(keras, case, params, grads, dtype) -> np.ndarray:
    variables = [keras.Variable(p, dtype=dtype) for p in params]
    optimizer = _optimizer(keras, case)
    out = []
    for gs in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g, dtype=dtype) for g in gs], variables)
        out.append(_flat(keras, [v.value for v in variables]))
    return np.stack(out)


def run_stateless(keras, case, params, grads, dtype) -> np.ndarray:
    import jax

    variables = [keras.Variable(p, dtype=dtype) for p in params]
    optimizer = _optimizer(keras, case)
    optimizer.build(variables)
    trainable = [v.value for v in variables]
    state = [v.value for v in optimizer.variables]

    def step(trainable, state, gs):
        return optimizer.stateless_apply(state, gs, trainable)

    step = jax.jit(step, donate_argnums=(0, 1))
    out = []
    for gs in grads:
        trainable, state = step(trainable, state, [jax.numpy.asarray(g, dtype=dtype) for g in gs])
        out.append(_flat(keras, trainable))
    return np.stack(out)


def main(cases_path: str, problem_path: str, out_path: str) -> None:
    import keras

    with open(cases_path) as f:
        cases = json.load(f)
    params, grads = _load_problem(problem_path)
    modes = {"apply": run_apply}
    if keras.backend.backend() == "jax":
        modes["stateless"] = run_stateless
    results = {}
    for case in cases:
        # scaled here in float64, as the test scales its copy: the same gradients bit for bit
        scaled = [[g * case["grad_scale"] for g in gs] for gs in grads]
        for dtype in case["dtypes"]:
            for mode, run in modes.items():
                with _precision(keras, dtype):
                    results[f"{case['id']}|{dtype}|{mode}"] = run(keras, case, params, scaled, dtype)
    keras_names = {peer_name(rule, "keras") for rule in rule_names("keras")} | {case["optimizer"] for case in cases}
    signatures = {
        name: list(inspect.signature(getattr(keras.optimizers, name)).parameters)
        for name in sorted(keras_names)
    }
    np.savez(out_path, signatures=np.array(json.dumps(signatures)), **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
