"""The root in every rule's denominator, in both eps conventions, written once.

``eps_in_sqrt=True`` (seed tutorial, optax) is ``sqrt(x + eps)``; ``False`` (torch.optim)
is ``sqrt(x) + eps``. The op order is torch.optim's (``_single_tensor_*``/``_multi_tensor_*``
of Adagrad, Adadelta and RMSprop), so results stay bitwise equal to it.
"""

from __future__ import annotations


def root(ops, x, eps: float, eps_in_sqrt: bool):
    """A new tensor (list): ``sqrt(x + eps)`` or ``sqrt(x) + eps``; ``x`` is unchanged."""
    if eps_in_sqrt:
        out = ops.add(x, eps)
        ops.sqrt_(out)
    else:
        out = ops.sqrt(x)
        ops.add_(out, eps)
    return out


def root_(ops, x, eps: float, eps_in_sqrt: bool):
    """The same in place on ``x`` (a temporary of the caller's); returns ``x``."""
    if eps_in_sqrt:
        ops.add_(x, eps)
        ops.sqrt_(x)
    else:
        ops.sqrt_(x)
        ops.add_(x, eps)
    return x
