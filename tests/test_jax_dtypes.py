"""impl_jax checks every gradient, parameter and state leaf's dtype against the others
(issue 13, item 1), naming the leaf path, as it checks shapes. Nothing is promoted: a
gradient must have its parameter's dtype, each state leaf the dtype
``rules.reference.state_dtype`` gives for it."""

import pytest

pytest.importorskip("jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import impl_jax  # noqa: E402
from adaptbench import rules  # noqa: E402
from tests import registry_cases  # noqa: E402


def test_complex_gradient_of_a_real_param_is_refused():
    """The issue's repro: it returned [-0.01, -0.] (the imaginary part dropped)."""
    tx = impl_jax.adagrad()
    x = jnp.zeros(2)
    with pytest.raises(TypeError, match=r"gradient <root> has dtype complex64 but params<root> has dtype float32"):
        tx.update(jnp.array([3 + 4j, 5j], jnp.complex64), tx.init(x), x)


def test_make_step_with_bfloat16_params_and_a_float32_state_is_refused():
    """The issue's repro: it returned float32 params for bfloat16 ones."""
    rule = rules.preset("adagrad", "torch")
    step = impl_jax.make_step(rule)
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = impl_jax.init(rule, {"w": jnp.ones(3, jnp.float32)})
    with pytest.raises(TypeError, match=r"state\.sum\['w'\] has dtype float32 but a gradient of dtype bfloat16"):
        step(params, state, params)


def test_float16_gradients_of_float32_params_are_refused():
    tx = impl_jax.rmsprop()
    params = {"layer": {"w": jnp.ones((2, 2), jnp.float32)}}
    grads = {"layer": {"w": jnp.ones((2, 2), jnp.float16)}}
    with pytest.raises(TypeError, match=r"gradient \['layer'\]\['w'\] has dtype float16 but params\['layer'\]\['w'\] has dtype float32"):
        tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("name", list(rules.RULES))
def test_state_of_another_dtype_is_refused_without_params_too(name):
    # no weight decay (AdamW's preset has some): without params only the state is checked
    rule = rules.preset(name, "torch", weight_decay=0.0, **registry_cases.every_state(rules.RULES[name]))
    tx = impl_jax.transformation(rule)
    state = tx.init({"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.float32)})
    grads = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    with pytest.raises(TypeError, match=r"state\.\w+\['b'\] has dtype float32 but a gradient of dtype bfloat16"):
        tx.update(grads, state)


def test_complex_state_layout_must_match_the_convention():
    """A state made under one complex convention is refused by the other: the second
    moments are complex64 under complex_as_real, float32 without."""
    params = {"z": jnp.ones(2, jnp.complex64)}
    torch_like = impl_jax.transformation(rules.preset("adagrad", "torch"))
    optax_like = impl_jax.transformation(rules.preset("adagrad", "optax"))
    assert torch_like.init(params).sum["z"].dtype == jnp.complex64
    assert optax_like.init(params).sum["z"].dtype == jnp.float32
    with pytest.raises(TypeError, match=r"state\.sum\['z'\] has dtype complex64 but a gradient of dtype complex64 needs float32"):
        optax_like.update(params, torch_like.init(params), params)


def test_integer_leaves_are_refused_with_their_path():
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype int32"):
        impl_jax.init(rules.preset("rmsprop"), {"n": jnp.arange(3), "w": jnp.ones(3)})
    tx = impl_jax.adagrad()
    params = {"w": jnp.ones(3)}
    with pytest.raises(TypeError, match=r"gradient \['w'\] has dtype int32"):
        tx.update({"w": jnp.arange(3)}, tx.init(params), params)


def test_checks_happen_at_trace_time_under_jit():
    tx = impl_jax.adadelta()
    params = {"w": jnp.ones(3, jnp.float32)}
    with pytest.raises(TypeError, match="float16"):
        jax.jit(tx.update)({"w": jnp.ones(3, jnp.float16)}, tx.init(params), params)


def test_float64_numpy_params_without_x64_are_float32_to_jax():
    """NumPy float64 arrays are float32 inside JAX unless x64 is on: not a mismatch."""
    tx = impl_jax.adagrad()
    params = {"w": np.ones(3)}
    updates, _ = tx.update({"w": jnp.ones(3, jnp.float32)}, tx.init(params), params)
    assert updates["w"].dtype == jnp.float32
