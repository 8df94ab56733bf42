"""One param group's plan: what its last full check saw, and how it is stepped.

The optimizer classes keep one :class:`GroupPlan` per param group: the parts that step it
(``functional.plan``: which kernel steps which tensors, chosen once from the rule's name,
the parameters' dtypes, devices and sizes), and what the full check that made it saw. It
is the one cache on a warm step's path; a step runs each group's plan.

A step validates every parameter group (``functional._check``: types, shapes, dtypes,
devices, state keys; the group's rule and impl from its hyperparameters) before it modifies
anything. Redoing all of that at every step cost more than the arithmetic for small models
(2 tensors: about 30 us of Python against 33 us of kernels on the 2-core CPU, where
torch.optim's whole step takes about 60 us). A :class:`GroupPlan` records what one
successful validation of one group saw, and :meth:`GroupPlan.reuse` accepts the next step
without the full check when, by identity and metadata:

- the group is the same dict, holding the same hyperparameter objects (``is``, so that
  ``centered=1`` written over ``True`` is not taken for it) and none of them a tensor (a
  tensor ``lr`` may have changed in place: such a group resolves its rule at every step);
- ``group["params"]`` holds the same tensors in the same order, each still of the shape,
  dtype and device it had (``param.data = ...`` and ``model.double()`` keep the object but
  change these);
- the same parameters have gradients, each a dense tensor of its parameter's shape, dtype and
  device (new gradient tensors every step are the normal case and are checked every step);
- each parameter's state is the same dict holding the same tensors, or still no entry for
  a rule that keeps none (``load_state_dict``, a state replaced by hand, a parameter
  converted since: all take the full check, which also casts and moves state, see
  ``functional._check``). A step that creates state commits it before its plan is kept,
  so the plan holds the state the next step finds (a first step's new
  ``FIRST_GRADIENT_STATE`` included).

Anything else, and every step traced by ``torch.compile``, takes the full check, which raises
the errors that name the offending entry. State tensors are trusted not to change shape,
dtype or device behind the optimizer's back while keeping their identity (``.data =`` or
``resize_`` on optimizer state); the full check would have caught that, this one does not.

The check holds references to the parameters and state tensors it saw (the optimizer holds
them anyway) but never to gradients.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

__all__ = ["GroupPlan", "hyperparameters"]

_STRIDED = torch.strided


def hyperparameters(group: dict, keys: tuple) -> tuple:
    """The values of ``keys`` in ``group`` as a tuple (None for a missing key, as
    ``group.get``)."""
    return tuple(map(group.get, keys))


class GroupPlan:
    """One param group's plan and last validated step: see the module docstring."""

    __slots__ = ("group", "values", "rule", "impl", "differentiable", "entries", "index", "plain", "parts")

    def __init__(self, group, values, rule, impl, differentiable, params, states, plain: bool, parts):
        """``params``/``states``: the group's stepped tensors and their live state dicts, as
        the step that validated them ran them; ``plain``: no ``DTensor`` among them (a
        ``DTensor`` step needs ``local_views`` again for its new gradients); ``parts``:
        ``functional.plan`` for their local tensors."""
        self.adopt(group, values, rule)
        self.impl, self.differentiable, self.plain = impl, differentiable, plain
        self.parts = parts
        stepped = {id(p): s for p, s in zip(params, states)}
        entries = []
        for p in group["params"]:
            s = stepped.get(id(p))
            if s is None:
                entries.append(None)
            else:
                entries.append((p, p.dtype, p.device, p.shape, s, tuple(s.items())))
        self.entries = tuple(entries)
        #: positions in ``group["params"]`` of the stepped tensors, for error messages
        self.index = tuple(j for j, e in enumerate(entries) if e is not None)

    def adopt(self, group: dict, values: tuple, rule) -> None:
        """Take ``group``'s ``values`` and their ``rule`` as validated (after a full
        resolution of them, for the same stepped tensors)."""
        self.group, self.rule = group, rule
        self.values = None if any(isinstance(v, Tensor) for v in values) else values

    def config(self, group: dict, values) -> tuple | None:
        """``(rule, impl)`` when ``group`` is the validated dict holding the same values."""
        if group is not self.group or self.values is None:
            return None
        if len(values) != len(self.values) or not all(map(operator.is_, values, self.values)):
            return None
        return self.rule, self.impl

    def reuse(self, params, state_map) -> tuple[list, list, list] | None:
        """``(params, grads, states)`` to step, or None when anything differs from the
        validated step (the caller then runs the full check). ``params`` is the group's
        ``"params"`` list; ``state_map`` the optimizer's ``state``."""
        if len(params) != len(self.entries):
            return None
        ps, gs, ss = [], [], []
        for p, entry in zip(params, self.entries):
            g = p.grad
            if entry is None:
                if g is None:
                    continue
                return None
            q, dtype, device, shape, s, items = entry
            if g is None or q is not p:
                return None
            if p.dtype is not dtype or p.device != device or p.shape != shape:
                return None
            if g.layout is not _STRIDED or g.dtype is not dtype or g.device != device or g.shape != shape:
                return None
            live = state_map.get(p)
            if live is not s:
                # a parameter whose rule keeps no state has no entry (torch.optim.SGD
                # without momentum): its validated empty dict stands in for one
                if live is not None or items:
                    return None
            elif len(s) != len(items):
                return None
            for name, t in items:
                if s.get(name) is not t:
                    return None
            ps.append(p)
            gs.append(g)
            ss.append(s)
        return ps, gs, ss
