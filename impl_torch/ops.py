"""A tiny ops namespace, so that each rule's math is written once.

The per-rule update functions (``impl_torch/adagrad.py``, ``adadelta.py``, ``rmsprop.py``)
are written against an ``ops`` argument that is either

- :class:`TensorOps`: every argument is a single tensor and the in-place methods of
  ``torch.Tensor`` do the work (``x.mul_(s)``, ``x.addcmul_(a, b, value=v)``, ...), the
  operations of torch.optim's ``_single_tensor_*`` functions; or
- :class:`ForeachOps`: every argument is a list of tensors (one device and dtype) and the
  ``torch._foreach_*`` kernels do the work, the operations of torch.optim's
  ``_multi_tensor_*`` functions; or
- :class:`AutogradOps`: single tensors like :class:`TensorOps`, every update computed out
  of place and copied in, so that autograd can differentiate through a step
  (torch.optim's ``differentiable=True``); or
- :class:`AbsSqOps`: single tensors, a complex parameter's squares taken as ``|g|^2``
  (optax's complex semantics, ``complex_as_real=False``).

The namespaces have the same method names and the same semantics; a method whose name
ends in ``_`` modifies its first argument in place and returns it, the others return new
tensors. Scalars are Python numbers; in :class:`ForeachOps`, ``mul``/``mul_``/``add_``
and ``addcdiv_``'s ``value`` also accept one scalar per tensor (a list), as
``torch._foreach_*``'s ScalarList overloads do (Adagrad's per-tensor ``clr`` when the
step counts differ). Both classes are namespaces of static methods; use the class itself
(``TensorOps``), not an instance.

``multi_tensor`` tells the math which of torch.optim's two code paths it mirrors, for the
one place where they round differently (Adagrad's final update, see ``adagrad.py``).
"""

from __future__ import annotations

from numbers import Number

import torch
from torch import Tensor

__all__ = ["TensorOps", "ForeachOps", "AutogradOps", "AbsSqOps"]

_ONE = torch.ones((), dtype=torch.float32)


def _is_scalar_list(x) -> bool:
    return isinstance(x, (list, tuple)) and (len(x) == 0 or isinstance(x[0], Number))


class TensorOps:
    """Single-tensor operations (torch.optim's ``_single_tensor_*`` path)."""

    multi_tensor = False

    # --- step counter -------------------------------------------------------------------
    @staticmethod
    def increment_(step: Tensor) -> None:
        """``step += 1``, as ``_single_tensor_*`` does it, by a 0-dim tensor: the same sum
        (exact), dispatched in a third of the time of a Python ``1`` (which is wrapped
        into a new tensor at every call: 3.2 against 1.2 us on the 2-core CPU). Traced by
        torch.compile, a constant ``1`` (the module's tensor would be an input of the
        graph, which Dynamo mishandled: counters of 196608 after 3 steps)."""
        if torch.compiler.is_dynamo_compiling():
            step += 1
        else:
            step.add_(_ONE)

    @staticmethod
    def values(step: Tensor) -> float:
        """The step count as a Python number (``torch.optim.optimizer._get_value``); traced
        by torch.compile, the tensor itself, as ``_get_value`` returns it there: a number
        read at trace time would be baked into the graph, and a graph reused at a later
        step would correct Adam's moments with the count it was traced at."""
        if torch.compiler.is_dynamo_compiling():
            return step
        return step.item()

    @staticmethod
    def scalar_map(fn, values):
        """``fn(values)``: a per-tensor scalar (ForeachOps maps over a list)."""
        return fn(values)

    # --- out of place ---------------------------------------------------------------------
    @staticmethod
    def neg(x: Tensor) -> Tensor:
        return torch.neg(x)

    @staticmethod
    def add(x: Tensor, other, alpha: float = 1) -> Tensor:
        """``x + alpha * other`` (``other`` a tensor or a scalar)."""
        if isinstance(other, Tensor):
            return x.add(other, alpha=alpha)
        return x.add(other)

    @staticmethod
    def mul(x: Tensor, other) -> Tensor:
        return x.mul(other)

    @staticmethod
    def div(x: Tensor, other) -> Tensor:
        return x.div(other)

    @staticmethod
    def sqrt(x: Tensor) -> Tensor:
        return x.sqrt()

    @staticmethod
    def sign(x: Tensor) -> Tensor:
        return x.sign()

    @staticmethod
    def addcmul(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        """``x + value * a * b``."""
        return x.addcmul(a, b, value=value)

    # --- in place --------------------------------------------------------------------------
    @staticmethod
    def add_(x: Tensor, other, alpha: float = 1) -> Tensor:
        """``x += alpha * other`` (``other`` a tensor or a scalar)."""
        if isinstance(other, Tensor):
            return x.add_(other, alpha=alpha)
        return x.add_(other)

    @staticmethod
    def mul_(x: Tensor, other) -> Tensor:
        return x.mul_(other)

    @staticmethod
    def div_(x: Tensor, other) -> Tensor:
        return x.div_(other)

    @staticmethod
    def sqrt_(x: Tensor) -> Tensor:
        return x.sqrt_()

    @staticmethod
    def addcmul_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        """``x += value * a * b``."""
        return x.addcmul_(a, b, value=value)

    @staticmethod
    def addcdiv_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        """``x += value * a / b`` (rounding order is the kernel's: CPU ``(value*a)/b``,
        CUDA ``value*(a/b)``)."""
        return x.addcdiv_(a, b, value=value)

    @staticmethod
    def lerp_(x: Tensor, end: Tensor, weight: float) -> Tensor:
        """``x += weight * (end - x)``."""
        return x.lerp_(end, weight)

    @staticmethod
    def maximum_(x: Tensor, other: Tensor) -> Tensor:
        """``x <- max(x, other)`` elementwise (NaN propagates), torch.optim.Adam's
        ``torch.maximum(x, other, out=x)``."""
        return torch.maximum(x, other, out=x)

    @staticmethod
    def zero_unless_positive_(x: Tensor, ref: Tensor) -> Tensor:
        """``x <- where(ref > 0, x, 0)`` (NaN in ``ref`` counts as not positive), as
        optax's ``scale_by_rss`` masks its update."""
        return x.masked_fill_(ref.gt(0).logical_not_(), 0)


class ForeachOps:
    """Multi-tensor operations on lists (torch.optim's ``_multi_tensor_*`` path)."""

    multi_tensor = True

    # --- step counter -------------------------------------------------------------------
    @staticmethod
    def increment_(steps: list[Tensor]) -> None:
        """``steps += 1``, as ``_multi_tensor_*`` does it: CPU steps through the Tensor
        overload (one wrapped 1.0 instead of one per tensor), device steps with a scalar."""
        if steps[0].is_cpu:
            torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(steps, 1)

    @staticmethod
    def values(steps: list[Tensor]) -> list[float]:
        return [s.item() for s in steps]

    @staticmethod
    def scalar_map(fn, values):
        return [fn(v) for v in values]

    # --- out of place ---------------------------------------------------------------------
    @staticmethod
    def neg(xs: list[Tensor]) -> list[Tensor]:
        return torch._foreach_neg(xs)

    @staticmethod
    def add(xs: list[Tensor], other, alpha: float = 1) -> list[Tensor]:
        if isinstance(other, (list, tuple)) and not _is_scalar_list(other):
            return torch._foreach_add(xs, other, alpha=alpha)
        if alpha != 1:
            raise ValueError("ForeachOps.add: alpha applies to tensor lists only")
        return torch._foreach_add(xs, other)

    @staticmethod
    def mul(xs: list[Tensor], other) -> list[Tensor]:
        return torch._foreach_mul(xs, other)

    @staticmethod
    def div(xs: list[Tensor], other) -> list[Tensor]:
        return torch._foreach_div(xs, other)

    @staticmethod
    def sqrt(xs: list[Tensor]) -> list[Tensor]:
        return torch._foreach_sqrt(xs)

    @staticmethod
    def sign(xs: list[Tensor]) -> list[Tensor]:
        return torch._foreach_sign(xs)

    @staticmethod
    def addcmul(xs: list[Tensor], a, b, value: float = 1) -> list[Tensor]:
        return torch._foreach_addcmul(xs, a, b, value=value)

    # --- in place --------------------------------------------------------------------------
    @staticmethod
    def add_(xs: list[Tensor], other, alpha: float = 1) -> list[Tensor]:
        if isinstance(other, (list, tuple)) and not _is_scalar_list(other):
            torch._foreach_add_(xs, other, alpha=alpha)
        elif alpha != 1:
            raise ValueError("ForeachOps.add_: alpha applies to tensor lists only")
        else:
            torch._foreach_add_(xs, other)
        return xs

    @staticmethod
    def mul_(xs: list[Tensor], other) -> list[Tensor]:
        torch._foreach_mul_(xs, other)
        return xs

    @staticmethod
    def div_(xs: list[Tensor], other) -> list[Tensor]:
        torch._foreach_div_(xs, other)
        return xs

    @staticmethod
    def sqrt_(xs: list[Tensor]) -> list[Tensor]:
        torch._foreach_sqrt_(xs)
        return xs

    @staticmethod
    def addcmul_(xs: list[Tensor], a, b, value: float = 1) -> list[Tensor]:
        if _is_scalar_list(value):
            torch._foreach_addcmul_(xs, a, b, list(value))
        else:
            torch._foreach_addcmul_(xs, a, b, value=value)
        return xs

    @staticmethod
    def addcdiv_(xs: list[Tensor], a, b, value: float = 1) -> list[Tensor]:
        if _is_scalar_list(value):
            torch._foreach_addcdiv_(xs, a, b, list(value))
        else:
            torch._foreach_addcdiv_(xs, a, b, value=value)
        return xs

    @staticmethod
    def lerp_(xs: list[Tensor], end, weight: float) -> list[Tensor]:
        torch._foreach_lerp_(xs, end, weight)
        return xs

    @staticmethod
    def maximum_(xs: list[Tensor], others) -> list[Tensor]:
        torch._foreach_maximum_(xs, others)
        return xs

    @staticmethod
    def zero_unless_positive_(xs: list[Tensor], refs) -> list[Tensor]:
        # No foreach kernel for a masked fill; one small op per tensor.
        for x, ref in zip(xs, refs):
            TensorOps.zero_unless_positive_(x, ref)
        return xs


class AutogradOps(TensorOps):
    """Single-tensor operations that autograd can differentiate through (torch.optim's
    ``differentiable=True``).

    Every ``*_`` method computes its result out of place, from a clone of its first
    argument, and then writes it into that argument with ``copy_``: the rule's math (which
    updates its state and parameter in place) runs unchanged, while no tensor that
    autograd saved for the backward pass is ever overwritten (an in-place ``sqrt_`` or
    ``mul_`` would overwrite the value its own gradient needs). The values are those of
    :class:`TensorOps` bit for bit (the same kernels, out of place). ``sqrt`` hands out a
    clone of its result, because autograd saves the result itself and the rules go on to
    update it in place (``sqrt(s) + eps``). Costs a clone and a copy per op: this
    namespace is for hypergradients, not for speed.
    """

    @staticmethod
    def sqrt(x: Tensor) -> Tensor:
        return x.sqrt().clone()

    @staticmethod
    def add_(x: Tensor, other, alpha: float = 1) -> Tensor:
        return x.copy_(TensorOps.add(x.clone(), other, alpha))

    @staticmethod
    def mul_(x: Tensor, other) -> Tensor:
        return x.copy_(x.clone().mul(other))

    @staticmethod
    def div_(x: Tensor, other) -> Tensor:
        return x.copy_(x.clone().div(other))

    @staticmethod
    def sqrt_(x: Tensor) -> Tensor:
        return x.copy_(x.clone().sqrt())

    @staticmethod
    def addcmul_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        return x.copy_(x.clone().addcmul(a, b, value=value))

    @staticmethod
    def addcdiv_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        return x.copy_(x.clone().addcdiv(a, b, value=value))

    @staticmethod
    def lerp_(x: Tensor, end: Tensor, weight: float) -> Tensor:
        return x.copy_(x.clone().lerp(end, weight))

    @staticmethod
    def maximum_(x: Tensor, other: Tensor) -> Tensor:
        return x.copy_(torch.maximum(x.clone(), other))

    @staticmethod
    def zero_unless_positive_(x: Tensor, ref: Tensor) -> Tensor:
        return x.copy_(x.clone().masked_fill(ref.gt(0).logical_not(), 0))


def _abs_sq(a: Tensor) -> Tensor:
    """``|a|^2 = Re(conj(a) * a)``, real (optax's ``numerics.abs_sq``)."""
    return torch.view_as_real(a).square().sum(-1)


class AbsSqOps(TensorOps):
    """Single-tensor operations for a complex parameter stepped the optax way
    (``rules``' ``complex_as_real=False``): a square ``a * a`` of a complex tensor is
    ``|a|^2``, real, so the second moments stay real, while first moments, momentum and
    the update stay complex. ``mul_`` of a real tensor by a complex one returns a new
    complex tensor (the result has no room in the real one): the rules use ``mul_``'s
    return value."""

    @staticmethod
    def addcmul(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        if a is b and a.is_complex():
            return x.add(_abs_sq(a), alpha=value)
        return x.addcmul(a, b, value=value)

    @staticmethod
    def addcmul_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        if a is b and a.is_complex():
            return x.add_(_abs_sq(a), alpha=value)
        return x.addcmul_(a, b, value=value)

    @staticmethod
    def mul_(x: Tensor, other) -> Tensor:
        if isinstance(other, Tensor) and other.is_complex() and not x.is_complex():
            return x.mul(other)
        return x.mul_(other)
