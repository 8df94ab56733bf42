"""SGD with momentum, dampening and Nesterov's variant as torch.optim.SGD computes it, in JAX.

Formula (``rules.SGD``'s docstring; ``b`` = ``momentum_buffer``)::

    g <- -g                              if maximize
    g <- g + weight_decay * p            (torch: grad.add(param, alpha=weight_decay))
                                         (decoupled_weight_decay: p <- p * (1 - lr * weight_decay)
                                         before p's update instead, see impl_jax._core)
    momentum > 0: b <- momentum * b + (1 - dampening) * g
                                         (torch: buf.mul_(momentum).add_(grad, alpha=1-dampening))
                  nesterov: u = g + momentum * b (torch: grad.add(buf, alpha=momentum))
                  else:     u = b
    else:         u = g
    delta = -lr * u                      (torch: param.add_(grad, alpha=-lr))

torch.optim.SGD creates ``b`` at the first step as a copy of ``g``; here the state starts
``b`` at zero (optax's ``trace`` does too) and the first step (count 0) uses
``dampening = 0``, so that ``b = 0*momentum + 1*g = g`` exactly. The state keeps an int32
``step`` as every ``impl_jax`` state does (an lr schedule is evaluated at it).

Source: torch/optim/sgd.py ``_single_tensor_sgd``; optax/_src/alias.py ``sgd``,
transforms/_accumulation.py ``trace``. Convention: torch.optim's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptbench import rules

from . import _core


class SGDState(NamedTuple):
    """torch.optim.SGD's per-parameter state, for a whole tree, with a step count.

    ``step``: int32 scalar, steps taken so far. ``momentum_buffer`` (only when momentum >
    0): tree like the params, zeros before the first step; else ``None``.
    """

    step: Any
    momentum_buffer: Any = None


def sgd_leaf(P: _core.Precision, rule: rules.SGD, p, g, momentum_buffer, lr, undamped):
    """One leaf of one step: ``(delta, new_momentum_buffer)``.

    The momentum branch follows the state (``momentum_buffer`` ``None``: no momentum);
    ``undamped`` is the step's ``1 - dampening`` (1 at the first step, ``_scalars``);
    ``delta`` is unrounded (working dtype).
    """
    g = _core.prepare_grad(P, rule, p, g)
    if momentum_buffer is None:
        return P.stored(-lr) * g, None
    momentum = rule.momentum
    # one rounding for (1 - dampening) * g + momentum * b, as torch's add_(g, alpha=...)
    b = P.rnd(g * P.stored(undamped) + P.rnd(P.up(momentum_buffer) * P.scalar(momentum)))
    u = P.rnd(b * P.stored(momentum) + g) if rule.nesterov else b
    return P.stored(-lr) * u, P.store(b)


def _scalars(rule: rules.SGD, lr, count) -> dict:
    """``lr``, and the step's ``1 - dampening``, computed before any rounding (in Python
    for a concrete dampening, as torch.optim computes ``alpha=1 - dampening``): 1 at the
    first step (count 0), where torch.optim copies the gradient into the new buffer
    (``rules.SGD.first_step_rule``)."""
    return {"lr": lr, "undamped": jnp.where(count == 0, 1.0, 1 - rule.dampening)}


SPEC = _core.RuleSpec(
    rule_cls=rules.SGD,
    state_cls=SGDState,
    leaf=sgd_leaf,
    scalars=_scalars,
    switches=(("momentum", "momentum_buffer"),),
)


sgd = _core.register(SPEC)
