"""The rules' math by name, for every impl: ``UPDATES[rule.name](ops, rule, params, grads, state)``.

Its own module so that ``functional`` (which dispatches) and ``fused`` (which compiles the
same math) both import it without importing each other.
"""

from __future__ import annotations

from typing import Callable

from . import adadelta, adagrad, rmsprop

UPDATES: dict[str, Callable] = {
    "adagrad": adagrad.update,
    "adadelta": adadelta.update,
    "rmsprop": rmsprop.update,
}
