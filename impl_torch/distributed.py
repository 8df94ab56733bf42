"""Sharded parameters: ``DTensor`` (torch.distributed.tensor) and FSDP2's ``fully_shard``.

A ``DTensor`` parameter's state is created like it (``init_state``'s ``torch.full_like``
returns a ``DTensor`` with the parameter's mesh and placements, as torch.optim's
``torch.zeros_like`` does), so each rank holds the state of its own shard only (ZeRO-style).
Every impl then steps the *local* tensors: ``local_views`` swaps each ``DTensor`` for its
``to_local()`` (the rank's shard of the parameter, of its state and of its gradient, all
laid out identically), and the rule's math runs on plain tensors. That is exact, because
the update is elementwise: position ``i`` of a parameter depends only on position ``i`` of
its gradient and state. It is also what lets ``impl="fused"`` compile one kernel for the
shard instead of tracing the ``DTensor`` subclass through ``torch.compile`` (which Inductor
fails to lower for dynamic shapes: ``AssertionError: For s29**2, expected [s29] to have
been codegen-ed``).

Placements, per parameter:

- ``Shard(d)`` (FSDP2 shards dim 0) and ``Replicate()``, on any mesh dimension: stepped
  locally; a replicated parameter is stepped identically on every rank of that dimension.
- A gradient whose placements differ from its parameter's (e.g. ``Partial()``, the
  un-reduced sum of per-rank gradients) is first ``redistribute``-d to the parameter's
  placements (``Partial -> Shard``: reduce-scatter, ``Partial -> Replicate``: all-reduce).
  torch.optim ends with the same values: DTensor's sharding propagation redistributes the
  gradient to the in-place op's output placements at the first op that combines them.
  This is a collective, so every rank must step the same parameters (as with torch.optim).
- A ``Partial()`` parameter is refused (``ValueError``): the update is not linear, so it
  cannot be applied to the un-reduced summands.
- A state tensor must have its parameter's mesh and placements (``ValueError`` otherwise:
  redistributing it would update a copy). ``"step"`` stays a plain CPU scalar tensor, as
  torch.optim keeps it.

A ``DTensor`` parameter with a plain-tensor gradient or state (or the reverse) is a
``TypeError``, as mixing them is in DTensor's own ops.

Checkpoints: ``torch.distributed.checkpoint``'s ``get_optimizer_state_dict`` /
``set_optimizer_state_dict`` save and load the sharded state like torch.optim's (see
docs/scaling-out.md for the recipe).
"""

from __future__ import annotations

import sys

from torch import Tensor

__all__ = ["local_views"]


def _dtensor_class():
    # A DTensor exists only once torch.distributed.tensor has been imported, so its absence
    # from sys.modules proves there is none, without importing torch.distributed here.
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else module.DTensor


def _list_names(kind: str, i: int) -> str:
    return f"{kind}[{i}]"


def local_views(rule, params: list, grads: list, states: list, *, where=_list_names):
    """``(params, grads, states)`` with every ``DTensor`` replaced by this rank's local
    tensor (state dicts copied, sharing ``"step"``), ready for any impl; the lists as they
    are when none is a ``DTensor``. Raises ``TypeError``/``ValueError`` naming the entry
    (``where(kind, i)``: ``params[i]``, ``grads[i]``, ``states[i]``; see the module
    docstring) before anything is modified; gradients with other placements are
    redistributed (a collective)."""
    dtensor = _dtensor_class()
    if dtensor is None:
        return params, grads, states
    names = rule.state_names
    if not any(isinstance(p, dtensor) or isinstance(g, dtensor) for p, g in zip(params, grads)):
        return params, grads, states
    specs = [_check_one(dtensor, i, p, grads[i], states[i], names, where) for i, p in enumerate(params)]
    out_p, out_g, out_s = [], [], []
    for i, (p, g, s) in enumerate(zip(params, grads, states)):
        if specs[i] is None:
            out_p.append(p)
            out_g.append(g)
            out_s.append(s)
            continue
        if specs[i]:
            g = g.redistribute(p.device_mesh, p.placements)
        out_p.append(p.to_local())
        out_g.append(g.to_local())
        local = {"step": s["step"]} if "step" in s else {}
        for n in names:
            local[n] = s[n].to_local()
        out_s.append(local)
    return out_p, out_g, out_s


def _check_one(dtensor, i: int, p: Tensor, g: Tensor, s: dict, names, where) -> bool | None:
    """None for a plain parameter; for a DTensor one, whether its gradient needs a
    redistribute. Raises for a mix of plain and DTensor, or a state laid out otherwise."""
    pw, gw, sw = where("params", i), where("grads", i), where("states", i)
    is_d = isinstance(p, dtensor)
    kind = "a DTensor" if is_d else "a plain tensor"
    if isinstance(g, dtensor) != is_d:
        raise TypeError(
            f"{gw} is {'a plain tensor' if is_d else 'a DTensor'} but {pw} is "
            f"{kind}; a DTensor parameter needs a DTensor gradient (and a plain one a plain one)"
        )
    for n in names:
        if isinstance(s[n], dtensor) != is_d:
            raise TypeError(
                f"{sw}[{n!r}] is {'a plain tensor' if is_d else 'a DTensor'} but "
                f"{pw} is {kind}; build the state with impl_torch.init_state(rule, param)"
            )
    if not is_d:
        return None
    if any(pl.is_partial() for pl in p.placements):
        raise ValueError(
            f"{pw} has placements {p.placements}: a Partial parameter cannot be "
            f"stepped (the update is not linear); redistribute it to Shard or Replicate"
        )
    for n in names:
        t = s[n]
        if t.device_mesh != p.device_mesh or t.placements != p.placements:
            raise ValueError(
                f"{sw}[{n!r}] has placements {t.placements} on {t.device_mesh}, but "
                f"{pw} has {p.placements} on {p.device_mesh}; optimizer state must be "
                f"sharded like its parameter"
            )
    if g.device_mesh != p.device_mesh:
        raise ValueError(
            f"{gw} is on {g.device_mesh}, but {pw} is on {p.device_mesh}"
        )
    return g.placements != p.placements
