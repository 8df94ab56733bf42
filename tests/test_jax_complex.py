"""impl_jax on complex parameters, in both conventions (``complex_as_real``), and
optax.rmsprop's options: against the float64/complex128 oracle and against optax."""

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from adaptbench.rules import reference  # noqa: E402
from tests.reference_libraries import optax_for  # noqa: E402

STEPS = 5
RNG = np.random.default_rng(3)
SHAPES = {"w": (3, 2), "b": (4,)}


def _complex_tree(dtype, seed):
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


CASES = {
    "adagrad-torch": rules.preset("adagrad", "torch", lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1),
    "adagrad-optax": rules.preset("adagrad", "optax", lr=0.1),
    "adadelta-torch": rules.preset("adadelta", "torch", weight_decay=0.1),
    "adadelta-optax": rules.preset("adadelta", "optax", lr=0.5),
    "rmsprop-torch-centered-momentum": rules.preset("rmsprop", "torch", centered=True, momentum=0.9, maximize=True),
    "rmsprop-optax": rules.preset("rmsprop", "optax"),
    # decoupled decay on complex leaves, in both conventions (p * (1 - lr*wd) with the step's lr)
    "adagrad-optax-decoupled": rules.preset(
        "adagrad", "optax", lr=0.1, lr_decay=0.5, weight_decay=0.1, decoupled_weight_decay=True
    ),
    "adadelta-torch-decoupled": rules.preset("adadelta", "torch", weight_decay=0.1, decoupled_weight_decay=True),
    "rmsprop-optax-decoupled": rules.preset(
        "rmsprop", "optax", momentum=0.9, weight_decay=0.1, decoupled_weight_decay=True
    ),
    "adam-torch-amsgrad": rules.preset("adam", "torch", lr=0.1, amsgrad=True, weight_decay=0.1, maximize=True),
    "adam-optax": rules.preset("adam", "optax", lr=0.1),
    "adamw-optax-nesterov": rules.preset("adamw", "optax", lr=0.1, nesterov=True, weight_decay=0.1),
    "sgd-torch-nesterov": rules.preset("sgd", "torch", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    "sgd-optax-momentum": rules.preset("sgd", "optax", lr=0.1, momentum=0.9),
    "rmsprop-optax-all-options": rules.preset(
        "rmsprop", "optax", centered=True, momentum=0.9, nesterov=True, bias_correction=True, initial_scale=0.1
    ),
}


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_complex_matches_the_oracle(case, dtype):
    """Each step re-synchronised with the oracle's; real and imaginary parts within the
    real dtype's tolerance; state dtypes as ``rules.reference.state_dtype`` says."""
    rule = CASES[case]
    real = {"complex64": "float32", "complex128": "float64"}[dtype]
    tol = rules.tolerance(real)
    with jax.enable_x64(dtype == "complex128"):
        tx = impl_jax.transformation(rule)
        update = jax.jit(tx.update)
        params = _complex_tree(dtype, 0)
        state = tx.init(jax.tree.map(jnp.asarray, params))
        for name in rule.state_names:
            for leaf in jax.tree.leaves(getattr(state, name)):
                assert leaf.dtype == reference.state_dtype(rule, name, dtype), name
        want_state = {k: reference.init_state(rule, v) for k, v in params.items()}
        for k in range(STEPS):
            grads = _complex_tree(dtype, 10 + k)
            u, state = update(grads, state, params)
            got = optax.apply_updates(params, u)
            for key in SHAPES:
                want_p, want_state[key] = reference.step(rule, params[key], grads[key], want_state[key])
                np.testing.assert_allclose(np.asarray(got[key]), want_p, rtol=tol.rtol, atol=tol.atol)
                for name in rule.state_names:
                    np.testing.assert_allclose(
                        np.asarray(getattr(state, name)[key]), want_state[key][name], rtol=tol.rtol, atol=tol.atol
                    )
                    # re-synchronise: the next step starts from the implementation's state
                    want_state[key][name] = np.asarray(getattr(state, name)[key])
            params = jax.tree.map(np.asarray, got)


def test_complex_as_real_is_the_real_view():
    """torch's convention, bitwise: a complex leaf steps exactly like its real view."""
    rule = CASES["rmsprop-torch-centered-momentum"]
    step = impl_jax.make_step(rule)
    params = _complex_tree("complex64", 0)
    view = lambda t: jax.tree.map(lambda z: jnp.stack([z.real, z.imag], -1), t)
    p, s = params, impl_jax.init(rule, params)
    pr, sr = view(params), impl_jax.init(rule, view(params))
    for k in range(STEPS):
        g = _complex_tree("complex64", 10 + k)
        p, s = step(p, s, g)
        pr, sr = step(pr, sr, view(g))
    for a, b in zip(jax.tree.leaves(view(p)), jax.tree.leaves(pr)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


OPTAX_COMPLEX = ("adagrad", "rmsprop-optax", "rmsprop-optax-all-options", "adam-optax", "sgd-optax-momentum")


@pytest.mark.parametrize("case", sorted(OPTAX_COMPLEX))
def test_optax_preset_matches_optax_on_complex64(case):
    rule = CASES["adagrad-optax"] if case == "adagrad" else CASES[case]
    ours, theirs = impl_jax.transformation(rule), optax_for(rule)
    params = jax.tree.map(jnp.asarray, _complex_tree("complex64", 0))
    pa, sa, pb, sb = params, ours.init(params), params, theirs.init(params)
    tol = rules.tolerance("float32")
    for k in range(STEPS):
        g = jax.tree.map(jnp.asarray, _complex_tree("complex64", 10 + k))
        ua, sa = jax.jit(ours.update)(g, sa, pa)
        ub, sb = jax.jit(theirs.update)(g, sb, pb)
        pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
        for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol.rtol, atol=tol.atol)


RMSPROP_OPTIONS = {
    "nesterov": dict(momentum=0.9, nesterov=True),
    "bias_correction": dict(bias_correction=True),
    "centered-bias_correction-initial_scale": dict(centered=True, bias_correction=True, initial_scale=0.5),
    "initial_scale-eps_outside": dict(initial_scale=0.5, eps_in_sqrt=False),
    "all": dict(centered=True, momentum=0.5, nesterov=True, bias_correction=True, initial_scale=0.2),
}


@pytest.mark.parametrize("case", sorted(RMSPROP_OPTIONS))
def test_rmsprop_options_match_optax_rmsprop_float32(case):
    options = RMSPROP_OPTIONS[case]
    rule = rules.preset("rmsprop", "optax", **options)
    ours = impl_jax.rmsprop(**rule.as_dict())
    theirs = optax.rmsprop(rule.lr, decay=rule.alpha, eps=rule.eps, **options)
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)}
    pa, sa, pb, sb = params, ours.init(params), params, theirs.init(params)
    tol = rules.tolerance("float32")
    for k in range(STEPS):
        # a zero first gradient keeps centered bias-corrected step 1 well-conditioned
        # (v - m^2 is exactly 0 there otherwise; see tests/test_rules_complex_and_optax_options.py)
        g = {"w": jnp.asarray(rng.standard_normal((4, 3)) * (k > 0), jnp.float32)}
        ua, sa = jax.jit(ours.update)(g, sa, pa)
        ub, sb = jax.jit(theirs.update)(g, sb, pb)
        pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
        np.testing.assert_allclose(np.asarray(pa["w"]), np.asarray(pb["w"]), rtol=tol.rtol, atol=tol.atol)
