"""The rules' math by name, for every impl: filled by each rule's module
(``impl_torch/<rule>.py``, or a user's own) through :func:`register_rule`.

Its own module so that ``functional`` (which dispatches) and ``fused`` (which compiles the
same math) both read it without importing each other or any rule.
"""

from __future__ import annotations

from typing import Callable

from adaptbench import rules

__all__ = ["UPDATES", "SPARSE_UPDATES", "STATE_AT_CONSTRUCTION", "COMPLEX_ARITHMETIC", "register_rule"]

#: ``update(ops, rule, params, grads, state)`` by rule name: the dense step, in place.
UPDATES: dict[str, Callable] = {}
#: ``sparse_update(rule, param, grad, state)`` by rule name, for the rules that take sparse
#: COO gradients (torch.optim's Adagrad does); the others refuse them.
SPARSE_UPDATES: dict[str, Callable] = {}
#: Rules whose torch.optim class creates every parameter's state in ``__init__`` (Adagrad)
#: rather than at its first step.
STATE_AT_CONSTRUCTION: set[str] = set()
#: Rules whose torch.optim class steps a complex parameter in complex arithmetic (SGD: every
#: op is linear with real scalars) rather than as its real view (``torch.view_as_real``,
#: Adagrad, Adam, ...). The same math, but a complex ``add(u, alpha=a)`` rounds ``a*u``
#: before the sum where the real kernel fuses them (1 ulp): the eager impls follow
#: torch.optim, the fused impl keeps real views (within tolerance).
COMPLEX_ARITHMETIC: set[str] = set()


def register_rule(name: str, update: Callable, *, sparse_update: Callable | None = None,
                  state_at_construction: bool = False, complex_arithmetic: bool = False,
                  replace: bool = False) -> None:
    """Register the PyTorch math of the rule ``name`` (registered in ``adaptbench.rules``
    first): ``update(ops, rule, params, grads, state)`` written once against an ops
    namespace (``impl_torch.ops``: ``TensorOps`` for one tensor, ``ForeachOps`` for lists),
    which every impl (loop, foreach, fused, auto, differentiable) calls. ``sparse_update``:
    the step for a sparse COO gradient, if the rule takes them; ``state_at_construction``:
    its optimizer class creates state when parameters are added, as torch.optim.Adagrad;
    ``complex_arithmetic``: it steps complex parameters as complex tensors, as
    torch.optim.SGD (:data:`COMPLEX_ARITHMETIC`).
    ``ValueError`` for an unregistered rule or one registered already (unless ``replace``),
    ``TypeError`` for a non-callable."""
    rules.rule_class(name)
    if name in UPDATES and not replace:
        raise ValueError(f"impl_torch already has the {name!r} rule (pass replace=True)")
    for what, fn in (("update", update), ("sparse_update", sparse_update)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{what} of {name!r} must be callable, got {type(fn).__name__}")
    UPDATES[name] = update
    if sparse_update is not None:
        SPARSE_UPDATES[name] = sparse_update
    else:
        SPARSE_UPDATES.pop(name, None)
    if state_at_construction:
        STATE_AT_CONSTRUCTION.add(name)
    else:
        STATE_AT_CONSTRUCTION.discard(name)
    if complex_arithmetic:
        COMPLEX_ARITHMETIC.add(name)
    else:
        COMPLEX_ARITHMETIC.discard(name)
