"""The oracle: one step of each rule in float64 NumPy, written for clarity, not speed.

Every implementation is judged against this. Inputs of any floating dtype are promoted to
float64 and the returned arrays are float64; round them to the working dtype to compare
(``ulp_distance`` below). The formulas are the ones in ``rules.hyperparams``' docstrings.
State is a dict keyed by torch.optim's state names (``step``, ``sum``, ``square_avg``,
``acc_delta``, ``grad_avg``, ``momentum_buffer``) so it maps one-to-one onto
``torch.optim`` state dicts.
"""

from __future__ import annotations

import numpy as np

from .hyperparams import Adadelta, Adagrad, RMSprop, _Rule


def init_state(rule: _Rule, param) -> dict:
    """The state before the first step, for a parameter shaped like ``param``."""
    shape = np.shape(param)
    state = {"step": 0}
    for name in rule.state_names:
        fill = rule.initial_accumulator_value if name == "sum" else 0.0
        state[name] = np.full(shape, fill, dtype=np.float64)
    return state


def _root(x: np.ndarray, rule: _Rule) -> np.ndarray:
    """The denominator ``sqrt(x + eps)`` or ``sqrt(x) + eps``, per ``eps_in_sqrt``."""
    return np.sqrt(x + rule.eps) if rule.eps_in_sqrt else np.sqrt(x) + rule.eps


def step(rule: _Rule, param, grad, state: dict) -> tuple[np.ndarray, dict]:
    """One step: returns ``(new_param, new_state)``; the inputs are not modified."""
    p = np.asarray(param, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"grad shape {g.shape} does not match param shape {p.shape}")
    if rule.maximize:
        g = -g
    decoupled = rule.decoupled_weight_decay and rule.weight_decay != 0
    if rule.weight_decay and not decoupled:
        g = g + rule.weight_decay * p
    new = {"step": state["step"] + 1}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if isinstance(rule, Adagrad):
            s = state["sum"] + g * g
            clr = rule.lr / (1.0 + (new["step"] - 1) * rule.lr_decay)
            if decoupled:
                p = p - clr * rule.weight_decay * p
            q = g / _root(s, rule)
            if rule.mask_zero_accumulator:
                q = np.where(s > 0, q, 0.0)
            new["sum"] = s
            p = p - clr * q
        elif isinstance(rule, Adadelta):
            v = rule.rho * state["square_avg"] + (1.0 - rule.rho) * g * g
            d = _root(state["acc_delta"], rule) / _root(v, rule) * g
            new["square_avg"] = v
            new["acc_delta"] = rule.rho * state["acc_delta"] + (1.0 - rule.rho) * d * d
            if decoupled:
                p = p - rule.lr * rule.weight_decay * p
            p = p - rule.lr * d
        elif isinstance(rule, RMSprop):
            v = rule.alpha * state["square_avg"] + (1.0 - rule.alpha) * g * g
            new["square_avg"] = v
            if rule.centered:
                m = rule.alpha * state["grad_avg"] + (1.0 - rule.alpha) * g
                new["grad_avg"] = m
                v = v - m * m
            q = g / _root(v, rule)
            if rule.momentum > 0:
                q = rule.momentum * state["momentum_buffer"] + q
                new["momentum_buffer"] = q
            if decoupled:
                p = p - rule.lr * rule.weight_decay * p
            p = p - rule.lr * q
        else:
            raise TypeError(f"not a rule: {rule!r}")
    return p, new


def run(rule: _Rule, param, grads) -> tuple[np.ndarray, dict]:
    """``len(grads)`` steps from the initial state; returns the final param and state."""
    p = np.asarray(param, dtype=np.float64)
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
