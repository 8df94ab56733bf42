"""The oracle: one step of each rule in float64 NumPy, written for clarity, not speed.

Every implementation is judged against this. Real inputs of any floating dtype are
promoted to float64, complex ones to complex128, and the returned arrays have those dtypes;
round them to the working dtype to compare (``ulp_distance`` below). ``step`` runs the
prologue every rule shares and then the rule's own ``reference_update`` (each rule's
module, e.g. ``rules/adagrad.py``, with its formula). State is a dict keyed by the rule's
state names (torch.optim's: ``step``, ``sum``, ``square_avg``, ...) so it maps one-to-one
onto ``torch.optim`` state dicts.

Complex parameters: with ``rule.complex_as_real`` every state array is complex128 and each
real and imaginary part is an element of its own (the step runs on the real view, as
torch.optim's does); without it the second moments (``sum``, ``square_avg``, ``acc_delta``)
(``rule.SECOND_MOMENTS``) are real float64 sums of ``|g|^2`` and the rest is complex128, as
optax computes.
"""

from __future__ import annotations

import numpy as np

from .base import Rule


def state_dtype(rule: Rule, name: str, param_dtype) -> np.dtype:
    """The dtype of state ``name`` for a parameter of ``param_dtype``: the parameter's,
    except the real counterpart for the second moments (``rule.SECOND_MOMENTS``) of a
    complex parameter under ``complex_as_real=False``."""
    param_dtype = np.dtype(param_dtype)
    if param_dtype.kind == "c" and not rule.complex_as_real and name in rule.SECOND_MOMENTS:
        return np.finfo(param_dtype).dtype
    return param_dtype


def init_state(rule: Rule, param) -> dict:
    """The state before the first step, for a parameter shaped (and typed) like ``param``."""
    shape = np.shape(param)
    param_dtype = np.complex128 if np.iscomplexobj(param) else np.float64
    state = {"step": 0}
    for name in rule.state_names:
        fill = rule.initial_value(name)
        dtype = state_dtype(rule, name, param_dtype)
        state[name] = np.full(shape, complex(fill, fill) if dtype.kind == "c" else fill, dtype=dtype)
    return state


def root(x: np.ndarray, rule: Rule) -> np.ndarray:
    """The denominator ``sqrt(x + eps)`` or ``sqrt(x) + eps``, per ``rule.eps_in_sqrt``."""
    return np.sqrt(x + rule.eps) if rule.eps_in_sqrt else np.sqrt(x) + rule.eps


def abs_sq(x: np.ndarray) -> np.ndarray:
    """``|x|^2``, real; for real ``x`` exactly ``x * x``."""
    return (np.conj(x) * x).real


def _as_real(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.complex128)
    return np.stack([x.real, x.imag], axis=-1)


def _as_complex(x: np.ndarray) -> np.ndarray:
    return x[..., 0] + 1j * x[..., 1]


def step(rule: Rule, param, grad, state: dict) -> tuple[np.ndarray, dict]:
    """One step: returns ``(new_param, new_state)``; the inputs are not modified.

    Raises ``ValueError`` when the shapes differ and ``TypeError`` for a complex gradient
    of a real parameter.
    """
    if np.shape(param) != np.shape(grad):
        raise ValueError(f"grad shape {np.shape(grad)} does not match param shape {np.shape(param)}")
    if np.iscomplexobj(grad) and not np.iscomplexobj(param):
        raise TypeError("grad is complex but param is real")
    if np.iscomplexobj(param) and rule.complex_as_real:
        real_state = {k: v if k == "step" else _as_real(v) for k, v in state.items()}
        p, new = _step(rule, _as_real(param), _as_real(grad), real_state)
        return _as_complex(p), {k: v if k == "step" else _as_complex(v) for k, v in new.items()}
    dtype = np.complex128 if np.iscomplexobj(param) else np.float64
    return _step(rule, np.asarray(param, dtype=dtype), np.asarray(grad, dtype=dtype), state)


def _step(rule: Rule, p: np.ndarray, g: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """The shared prologue (``maximize``, coupled weight decay, the step count), then the
    rule's own math (``rule.reference_update``), for real float64 or (``|g|^2`` moments)
    complex128 arrays."""
    if not isinstance(rule, Rule):
        raise TypeError(f"not a rule: {rule!r}")
    if rule.maximize:
        g = -g
    decoupled = rule.decoupled_weight_decay and rule.weight_decay != 0
    if rule.weight_decay and not decoupled:
        g = g + rule.weight_decay * p

    def decay(p, lr):
        return p - lr * rule.weight_decay * p if decoupled else p

    new = {"step": state["step"] + 1}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = rule.reference_update(p, g, state, new, decay)
    return p, new


def run(rule: Rule, param, grads) -> tuple[np.ndarray, dict]:
    """``len(grads)`` steps from the initial state; returns the final param and state."""
    p = np.asarray(param, dtype=np.complex128 if np.iscomplexobj(param) else np.float64)
    state = init_state(rule, p)
    for g in grads:
        p, state = step(rule, p, g, state)
    return p, state


def ulp_distance(actual, expected64, dtype, scale=None) -> np.ndarray:
    """Elementwise distance in units in the last place of ``dtype``.

    ``expected64`` (float64) is rounded to ``dtype`` first; the distance is
    ``|actual - round(expected)| / spacing(max(|round(expected)|, |scale|))``, so 0 means
    correctly rounded and 0.5-1 means within one rounding. ``scale`` (optional) is the
    magnitude of the operands: for ``p_new = p - delta`` pass ``max(|p|, |delta|)``, since
    when the two nearly cancel an error of one ulp of the operands is many ulps of the
    small result, and says nothing about the implementation. Matching NaNs and equal infinities count
    as 0; a NaN or infinity on one side only counts as ``inf``. bf16, which NumPy lacks,
    is passed as ``"bfloat16"`` and measured with its 8-bit significand.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected64 = np.asarray(expected64, dtype=np.float64)
    if str(dtype) == "bfloat16":
        rounded = _round_to_bfloat16(expected64)
        mantissa_bits = 8
    else:
        dt = np.dtype(dtype)
        rounded = expected64.astype(dt).astype(np.float64)
        mantissa_bits = np.finfo(dt).nmant + 1
        tiny = float(np.finfo(dt).smallest_subnormal)
    if str(dtype) == "bfloat16":
        tiny = 2.0 ** -133
    magnitude = np.abs(rounded) if scale is None else np.maximum(np.abs(rounded), np.abs(scale))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        exponent = np.floor(np.log2(np.maximum(magnitude, np.finfo(np.float64).tiny)))
        spacing = np.maximum(np.exp2(exponent - (mantissa_bits - 1)), tiny)
        dist = np.abs(actual - rounded) / spacing
    both_nan = np.isnan(actual) & np.isnan(rounded)
    same_inf = np.isinf(actual) & np.isinf(rounded) & (np.sign(actual) == np.sign(rounded))
    dist = np.where(both_nan | same_inf, 0.0, dist)
    return np.where(np.isnan(dist), np.inf, dist)


def _round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float64 to bfloat16 (round half to even, via float32), returned as float64."""
    f32 = x.astype(np.float32)
    bits = f32.view(np.uint32).astype(np.uint64)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    rounded = ((bits + rounding) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32).astype(np.float64)
    return np.where(np.isnan(x), np.nan, out)
