"""adaptbench's PyTorch implementations of the registered rules (``adaptbench.rules.RULES``).

Imports ``rules`` and ``torch`` only (never JAX). Each rule's math is written once, in its
own module (``impl_torch/<rule>.py``, registered with :func:`register_rule`), against an
ops namespace (``ops.py``): the ``"loop"`` impl runs it per tensor (torch.optim's
``foreach=False``), ``"foreach"`` per (device, dtype) group with ``torch._foreach_*``
(``foreach=True``), ``"fused"`` per tensor through ``torch.compile``, one pass over memory
(``fused.py``; ``fused=True``), ``"auto"`` (the default) chooses per group.

- ``init_state(rule, param) -> dict`` and ``step(rule, params, grads, states, impl="loop")``:
  the functional API (``functional.py``).
- ``Adagrad``, ``Adadelta``, ``RMSprop``, ``Adam``, ``AdamW``, ``SGD``: ``torch.optim.Optimizer`` subclasses with
  torch.optim's signatures plus the rules' other switches and ``impl``, made from the
  specification (``optimizer_class(name)``, ``optimizer.py``); ``optimizer_for(rule,
  params, impl=None)`` for any rule object, a user's registered rule included.
- ``IMPLS``: the available impl names; ``register_impl(name, fn)`` adds one.
- ``register_rule(name, update, ...)``: a rule's PyTorch math (docs/adding-a-rule.md).
- ``testing``: the stand-in device and other test seams (``impl_torch.testing``).
"""

from . import adadelta, adagrad, adam, adamw, rmsprop, sgd  # noqa: F401  (each registers its rule's math)
from .functional import DEFAULT_IMPL, IMPLS, init_state, register_impl, step
from .ops import ForeachOps, TensorOps
from .optimizer import optimizer_class, optimizer_for
from .updates import register_rule

Adagrad = optimizer_class("adagrad")
Adadelta = optimizer_class("adadelta")
RMSprop = optimizer_class("rmsprop")
Adam = optimizer_class("adam")
AdamW = optimizer_class("adamw")
SGD = optimizer_class("sgd")


def __getattr__(name: str):
    # The class of a rule registered later (a user's), by its class name, so that
    # ``impl_torch.SignDescent`` resolves and its optimizers pickle.
    from .updates import UPDATES

    for rule_name in UPDATES:
        cls = optimizer_class(rule_name)
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module 'impl_torch' has no attribute {name!r}")


__all__ = [
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Adam",
    "AdamW",
    "SGD",
    "optimizer_class",
    "optimizer_for",
    "init_state",
    "step",
    "IMPLS",
    "DEFAULT_IMPL",
    "register_impl",
    "register_rule",
    "TensorOps",
    "ForeachOps",
]
