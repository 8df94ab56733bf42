"""adaptbench's PyTorch implementations of Adagrad, Adadelta and RMSprop.

Imports ``rules`` and ``torch`` only (never JAX). The per-rule math is written once
(``adagrad.py``, ``adadelta.py``, ``rmsprop.py``) against an ops namespace (``ops.py``):
the ``"loop"`` impl runs it per tensor (torch.optim's ``foreach=False``), ``"foreach"`` per
(device, dtype) group with ``torch._foreach_*`` (``foreach=True``), ``"fused"`` per tensor
through ``torch.compile``, one pass over memory (``fused.py``; ``fused=True``).

- ``init_state(rule, param) -> dict`` and ``step(rule, params, grads, states, impl="loop")``:
  the functional API (``functional.py``).
- ``Adagrad``, ``Adadelta``, ``RMSprop``: ``torch.optim.Optimizer`` subclasses with
  torch.optim's signatures plus ``eps_in_sqrt`` (and Adagrad ``mask_zero_accumulator``)
  and ``impl``; ``optimizer_for(rule, params, impl=None)`` (``optimizer.py``).
- ``IMPLS``: the available impl names; ``register_impl(name, fn)`` adds one.
"""

from .functional import DEFAULT_IMPL, IMPLS, init_state, register_impl, step
from .ops import ForeachOps, TensorOps
from .optimizer import Adadelta, Adagrad, RMSprop, optimizer_for

__all__ = [
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "optimizer_for",
    "init_state",
    "step",
    "IMPLS",
    "DEFAULT_IMPL",
    "register_impl",
    "TensorOps",
    "ForeachOps",
]
