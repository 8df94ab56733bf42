"""Functional API: ``init_state`` and ``step`` over lists of tensors, and the impl table.

- ``init_state(rule, param)`` -> the state dict torch.optim would create for ``param``:
  ``"step"`` a scalar tensor 0 on the CPU (float32, or float64 when torch's default dtype
  is float64: ``torch.optim.optimizer._get_scalar_dtype``) for the rules that count steps
  (``rule.STEP_IN_STATE``), and one tensor shaped like the parameter per name in
  ``rule.state_names`` (Adagrad's ``"sum"`` filled with ``initial_accumulator_value``,
  the others with zeros) except those torch.optim creates at the first step
  (``rule.FIRST_GRADIENT_STATE``, SGD's ``"momentum_buffer"``): a step allocates them
  as zeros, once every check passed, and steps those parameters with
  ``rule.first_step_rule()`` (``with_first_state``, ``run_plan``).
- ``step(rule, params, grads, states, impl="loop")`` updates ``params`` and ``states`` in
  place. ``"loop"`` calls the rule's math once per tensor with ``TensorOps``
  (torch.optim's ``foreach=False``); ``"foreach"`` groups the tensors by (device, dtype)
  and calls it once per group with ``ForeachOps`` (torch.optim's ``foreach=True``);
  ``"fused"`` runs the same math per tensor through ``torch.compile`` (``fused.py``), one
  pass over memory per tensor, and raises ``RuntimeError`` where torch.compile is
  unavailable (never a silent fall-back).

``DTensor`` parameters (torch.distributed.tensor, FSDP2) are stepped shard by shard: every
impl receives this rank's local tensors (``distributed.py``).

Every argument is checked before anything is modified; a mismatch raises ``ValueError``
(shape, device, length, missing state) or ``TypeError`` (dtype, complex, sparse, not a
tensor) naming the offending argument, e.g. ``grads[2]`` or ``states[0]['sum']``.

A further implementation registers itself with ``register_impl(name, fn)``; ``fn`` is
called as ``fn(rule, params, grads, states)`` with checked lists (no ``None`` grads).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from adaptbench import rules

from . import caches
from .distributed import local_views
from .ops import AbsSqOps, AutogradOps, ForeachOps, TensorOps
from .prologue import effective_grads
from .updates import COMPLEX_ARITHMETIC, SPARSE_UPDATES, UPDATES

__all__ = [
    "DEFAULT_IMPL",
    "IMPLS",
    "UPDATES",
    "init_state",
    "register_impl",
    "step",
    "check_rule",
    "state_keys",
    "with_first_state",
]


#: The impl the optimizer classes use when neither ``impl`` nor ``foreach``/``fused`` says.
DEFAULT_IMPL = "auto"

def check_rule(rule) -> None:
    """``TypeError`` unless ``rule`` is a ``rules`` object of a rule whose math
    ``impl_torch`` has (``register_rule``; every rule of ``rules.RULES`` shipped here)."""
    if not isinstance(rule, rules.Rule) or rule.name not in UPDATES:
        raise TypeError(
            f"rule must be a rules object of one of {sorted(UPDATES)} (a rules.Rule registered "
            f"with impl_torch.register_rule), got {type(rule).__name__} {rule!r}"
        )


def _scalar_dtype() -> torch.dtype:
    # torch.optim.optimizer._get_scalar_dtype() for non-fused optimizers.
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check_param(param, where: str) -> None:
    if not isinstance(param, Tensor):
        raise TypeError(f"{where} must be a torch.Tensor, got {type(param).__name__}")
    if not (param.is_floating_point() or param.is_complex()):
        raise TypeError(f"{where} must have a floating or complex dtype, got {param.dtype}")
    if param.layout != torch.strided:
        raise TypeError(f"{where} must be a dense (strided) tensor, got layout {param.layout}")


def init_state(rule, param: Tensor) -> dict:
    """The state before the first step for ``param``, keyed by torch.optim's names.

    ``{"step": tensor(0.) on the CPU, "sum"/"square_avg"/...: tensors like param}``
    (``memory_format=torch.preserve_format``, as torch.optim allocates them; a ``DTensor``
    parameter gets ``DTensor`` state with its mesh and placements, each rank allocating
    only its shard); no ``"step"`` unless ``rule.STEP_IN_STATE``, and none of
    ``rule.FIRST_GRADIENT_STATE`` (SGD: ``{}``, as torch.optim.SGD's fresh state).
    """
    check_rule(rule)
    _check_param(param, "param")
    state: dict = {"step": torch.tensor(0.0, dtype=_scalar_dtype())} if rule.STEP_IN_STATE else {}
    for name in rule.state_names:
        if name not in rule.FIRST_GRADIENT_STATE:
            state[name] = _filled(rule, name, param)
    return state


def _filled(rule, name: str, param: Tensor) -> Tensor:
    """State ``name`` of ``param`` at its initial value."""
    fill = rule.initial_value(name)
    dtype = state_dtype(rule, name, param)
    if dtype.is_complex:
        # Stepped as a real view (``_as_real``): both halves start at the fill value,
        # as torch.optim.Adagrad fills complex(v, v).
        fill = complex(fill, fill)
    return torch.full_like(param, fill, dtype=dtype, memory_format=torch.preserve_format)


def state_keys(rule) -> tuple[str, ...]:
    """The keys of a stepped parameter's state: ``"step"`` (``rule.STEP_IN_STATE``), then
    ``rule.state_names``."""
    return ("step",) + rule.state_names if rule.STEP_IN_STATE else rule.state_names


def with_first_state(rule, params, states) -> tuple[list, list[int]]:
    """``(states, first)``: ``states`` with each dict that lacks the rule's
    ``FIRST_GRADIENT_STATE`` replaced by a copy holding them as zeros (like its parameter,
    as ``init_state`` allocates), and the positions ``first`` of those parameters, whose
    step is their first: ``run_plan`` steps them with ``rule.first_step_rule()``. The
    caller's dicts are not modified (they take the copies' entries once every check has
    passed); the list is copied only when some state is new."""
    names = [n for n in rule.state_names if n in rule.FIRST_GRADIENT_STATE]
    if not names:
        return states, []
    first = [i for i, s in enumerate(states) if any(n not in s for n in names)]
    if not first:
        return states, []
    states = list(states)
    for i in first:
        s = states[i]
        states[i] = {**s, **{n: _filled(rule, n, params[i]) for n in names if n not in s}}
    return states, first


def state_dtype(rule, name: str, param: Tensor) -> torch.dtype:
    """The dtype of state ``name`` for ``param``: the parameter's, except the real
    counterpart for the second moments (``rule.SECOND_MOMENTS``) of a complex parameter
    under ``complex_as_real=False`` (``rules.reference.state_dtype``)."""
    if param.is_complex() and not rule.complex_as_real and name in rule.SECOND_MOMENTS:
        return param.real.dtype
    return param.dtype


def _same_place(t: Tensor, param: Tensor, where, param_where) -> None:
    """Shape, dtype and device of ``t`` equal ``param``'s. ``where`` and ``param_where`` may
    be callables returning the name: names are only formatted for an error (a step checks
    every tensor, and formatting them all cost ~1 us per tensor)."""
    if t.shape == param.shape and t.dtype == param.dtype and t.device == param.device:
        return
    where = where() if callable(where) else where
    param_where = param_where() if callable(param_where) else param_where
    if t.shape != param.shape:
        raise ValueError(
            f"{where} has shape {tuple(t.shape)}, but {param_where} has shape {tuple(param.shape)}"
        )
    if t.dtype != param.dtype:
        raise TypeError(f"{where} has dtype {t.dtype}, but {param_where} has dtype {param.dtype}")
    if t.device != param.device:
        raise ValueError(f"{where} is on {t.device}, but {param_where} is on {param.device}")


def _list_names(kind: str, i: int) -> str:
    """The functional API's names in errors: ``params[i]``, ``grads[i]``, ``states[i]``."""
    return f"{kind}[{i}]"


def _check(rule, params, grads, states, *, where=_list_names, cast_state: list | None = None):
    """Validate everything up front; return the lists without the ``None``-grad entries.

    ``where(kind, i)`` names entry ``i`` of ``"params"``, ``"grads"`` or ``"states"`` in
    errors (the optimizer classes name ``param_groups[g]['params'][j]``).
    ``cast_state`` (a list) is the optimizer classes' policy for a parameter converted after its
    state was made (``model.double()``, ``model.to(device)``): a state tensor shaped like its
    parameter but of another dtype or device is no error; the returned state is then a
    shallow copy of that dict holding the tensor cast and moved to the parameter's dtype and
    device (``Tensor.to``: torch.optim's rule when it loads a state dict), and its position
    in the returned lists is appended to ``cast_state``. The caller's dicts are never
    modified, so a caller that commits the copies only once every check passed changes
    nothing when one fails.
    """
    if isinstance(params, Tensor) or isinstance(grads, Tensor) or isinstance(states, Mapping):
        raise TypeError("params, grads and states must be sequences (lists), one entry per tensor")
    params, grads, states = list(params), list(grads), list(states)
    if not (len(params) == len(grads) == len(states)):
        raise ValueError(
            f"params, grads and states must have the same length, got "
            f"{len(params)}, {len(grads)} and {len(states)}"
        )
    names = state_keys(rule)
    first_names = rule.FIRST_GRADIENT_STATE
    keep_p, keep_g, keep_s = [], [], []
    seen: set[int] = set()
    for i, (p, g, s) in enumerate(zip(params, grads, states)):
        pw = functools.partial(where, "params", i)
        if not (isinstance(p, Tensor) and p.layout == torch.strided and p.is_floating_point()):
            _check_param(p, pw())  # the names are formatted only for an error
        if id(p) in seen:
            raise ValueError(f"{pw()} appears more than once in params")
        seen.add(id(p))
        if g is None:
            continue
        gw = functools.partial(where, "grads", i)
        if not isinstance(g, Tensor):
            raise TypeError(f"{gw()} must be a torch.Tensor or None, got {type(g).__name__}")
        if g.layout != torch.strided:
            _check_sparse_grad(rule, p, g, gw(), pw())
        else:
            _same_place(g, p, gw, pw)
        if not isinstance(s, Mapping):
            raise TypeError(f"{where('states', i)} must be a dict of state tensors, got {type(s).__name__}")
        cast = None
        real_moments = not rule.complex_as_real and p.is_complex()
        for name in names:
            t = s.get(name)
            if t is None and name in first_names and name not in s:
                continue  # the parameter's first step (with_first_state allocates it)
            if not isinstance(t, Tensor):
                sw = f"{where('states', i)}[{name!r}]"
                if name not in s:
                    raise ValueError(
                        f"{sw} is missing: a {rule.name} state needs "
                        f"{[n for n in names if n not in first_names]} "
                        f"(build it with impl_torch.init_state(rule, param))"
                    )
                raise TypeError(f"{sw} must be a torch.Tensor, got {type(t).__name__}")
            if name == "step":
                if t.numel() != 1:
                    raise ValueError(
                        f"{where('states', i)}[{name!r}] must be a one-element tensor, got shape {tuple(t.shape)}"
                    )
                continue
            # A complex parameter stepped the optax way keeps real second moments.
            ref = p.real if real_moments and name in rule.SECOND_MOMENTS else p
            if t.shape == ref.shape and t.dtype == ref.dtype and t.device == ref.device:
                continue
            elif cast_state is not None and t.shape == ref.shape:
                cast = dict(s) if cast is None else cast
                cast[name] = t.to(dtype=ref.dtype, device=ref.device)
            else:
                ref_where = pw if ref is p else (lambda pw=pw: f"{pw()}.real")
                _same_place(t, ref, lambda i=i, name=name: f"{where('states', i)}[{name!r}]", ref_where)
        if cast is not None:
            cast_state.append(len(keep_p))
        keep_p.append(p)
        keep_g.append(g)
        keep_s.append(s if cast is None else cast)
    return keep_p, keep_g, keep_s


def _check_sparse_grad(rule, p: Tensor, g: Tensor, gw: str, pw: str) -> None:
    """A sparse gradient is taken by the rules that register a sparse step (Adagrad, as in
    torch.optim), COO, without weight decay."""
    if rule.name not in SPARSE_UPDATES or g.layout != torch.sparse_coo:
        raise TypeError(
            f"{gw} is a sparse gradient (layout {g.layout}); impl_torch's {rule.name} supports "
            f"dense gradients only (sparse COO gradients are taken by "
            f"{', '.join(f'impl_torch.{_class_name(n)}, torch.optim.{_class_name(n)}' for n in SPARSE_UPDATES)}"
            f"{' and ' if SPARSE_UPDATES else ''}torch.optim.SparseAdam)"
        )
    if rule.weight_decay != 0:
        # torch.optim.Adagrad raises RuntimeError with this wording at its step.
        raise RuntimeError(f"{gw}: weight_decay option is not compatible with sparse gradients")
    if p.is_complex():
        raise TypeError(f"{gw} is sparse and {pw} complex; impl_torch steps that pair in neither way")
    if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        raise ValueError(
            f"{gw} (sparse, shape {tuple(g.shape)}, {g.dtype}, {g.device}) does not match "
            f"{pw} (shape {tuple(p.shape)}, {p.dtype}, {p.device})"
        )


def _class_name(rule_name: str) -> str:
    """The optimizer class name of a rule (torch.optim's, else its dataclass's)."""
    cls = rules.rule_class(rule_name)
    peer = cls.PEERS.get("torch")
    return peer.name if peer is not None else cls.__name__


def _as_real(rule, params, grads, states):
    """Complex tensors replaced by real views (``torch.view_as_real``: a trailing dimension
    of 2, real and imaginary parts), as torch.optim steps complex parameters: every rule
    then treats the two parts as independent real parameters. Lists are copied only when
    some parameter is complex; the state dicts are new dicts over views of the same
    storage."""
    if not any(p.is_complex() for p in params):
        return params, grads, states
    names = state_keys(rule)
    out_p, out_g, out_s = [], [], []
    for p, g, s in zip(params, grads, states):
        if p.is_complex():
            p, g = torch.view_as_real(p), torch.view_as_real(g)
            s = {n: (s[n] if n == "step" else torch.view_as_real(s[n])) for n in names}
        out_p.append(p)
        out_g.append(g)
        out_s.append(s)
    return out_p, out_g, out_s


def plan(rule, impl: str, params, grads, *, differentiable: bool = False) -> list[tuple[Callable, list[int] | None]]:
    """The one dispatcher: how checked lists (no ``None`` grads) are stepped under ``impl``,
    as parts ``(fn, indices)``, each stepped by ``fn(rule, params, grads, states)`` on the
    entries at ``indices`` (None: all of them). Sparse gradients take the rule's
    registered sparse step (Adagrad's); complex parameters under ``complex_as_real=False`` the
    per-tensor math through ``AbsSqOps``; with ``differentiable`` the rest the per-tensor
    math through ``AutogradOps`` (the caller sets the grad mode); else ``"auto"``'s choice
    per (device, dtype) group (``_auto_plan``), ``"loop"``, or the registered impl (complex
    tensors as real views). Depends on the rule's name and ``complex_as_real``, the
    parameters' dtypes, devices and sizes and the gradients' layouts only, so the optimizer
    classes make it once per validated group (``plan.GroupPlan``)."""
    sparse = [i for i, g in enumerate(grads) if g.layout != torch.strided]
    abs_sq = [] if rule.complex_as_real else [i for i, p in enumerate(params) if p.is_complex()]
    if differentiable and (sparse or abs_sq):
        raise ValueError(
            "differentiable=True steps dense gradients and complex parameters as real views "
            "only (not sparse gradients, not complex_as_real=False)"
        )
    parts: list[tuple[Callable, list[int] | None]] = []
    if sparse:
        parts.append((_sparse, sparse))
    if abs_sq:
        parts.append((_abs_sq, abs_sq))
    special = set(sparse) | set(abs_sq)
    rest = [i for i in range(len(params)) if i not in special]
    if not rest:
        return parts
    # Through the table, so that register_impl(name, fn, replace=True) takes effect for
    # every name; the built-in auto and loop are recognised by identity (auto is planned
    # per group, loop steps complex tensors after a complex prologue).
    fn = _IMPL_TABLE[impl]
    if differentiable:
        main = [(_differentiable, None)]
    elif fn is _auto:
        main = _auto_plan(rule, [params[i] for i in rest])
    elif fn is _loop:
        main = [(_loop, None)]
    else:
        complex_params = any(params[i].is_complex() for i in rest)
        main = [(_Registered(impl, real_views=complex_params), None)]
    if not special:
        return main
    return parts + [(fn, rest if idx is None else [rest[i] for i in idx]) for fn, idx in main]


def part_name(fn) -> str:
    """What a plan's part runs, for people: ``"loop"``, ``"foreach"``, ``"fused"`` (auto's
    fused part; ``"eager after a failed compile"`` once its compile failed), ``"sparse"``,
    ``"abs_sq"`` (complex, ``complex_as_real=False``), ``"differentiable"``, or a
    registered impl's name."""
    if isinstance(fn, _Registered):
        return fn.impl
    if isinstance(fn, _AutoFused):
        return "eager after a failed compile" if fn.failed else "fused"
    return _PART_NAMES[fn]


def run_plan(parts, rule, params, grads, states, first=()) -> None:
    """Steps the lists by ``parts`` (``plan``); the entries at the positions ``first``
    (``with_first_state``) with ``rule.first_step_rule()``, each part then called once per
    rule for its entries of that rule (the same kernels: a first step changes numbers
    only, never the structure the parts were planned for)."""
    if first:
        _run_plan_first(parts, rule, params, grads, states, first)
        return
    for fn, idx in parts:
        if idx is None:
            fn(rule, params, grads, states)
        else:
            fn(rule, [params[i] for i in idx], [grads[i] for i in idx], [states[i] for i in idx])


def _run_plan_first(parts, rule, params, grads, states, first) -> None:
    first = set(first)
    first_rule = rule.first_step_rule()
    for fn, idx in parts:
        idx = range(len(params)) if idx is None else idx
        for r, sub in ((first_rule, [i for i in idx if i in first]), (rule, [i for i in idx if i not in first])):
            if sub:
                fn(r, [params[i] for i in sub], [grads[i] for i in sub], [states[i] for i in sub])


class _Registered:
    """A part stepped by a registered impl, looked up at every call (``register_impl(...,
    replace=True)`` takes effect at once); complex tensors as real views when some are."""

    __slots__ = ("impl", "real_views")

    def __init__(self, impl: str, real_views: bool):
        self.impl, self.real_views = impl, real_views

    def __call__(self, rule, params, grads, states) -> None:
        fn = _IMPL_TABLE[self.impl]
        # the built-in foreach views them itself, as torch.optim's rule does (COMPLEX_ARITHMETIC)
        if self.real_views and fn is not _foreach:
            params, grads, states = _as_real(rule, params, grads, states)
        fn(rule, params, grads, states)


def _sparse(rule, params, grads, states) -> None:
    sparse_update = SPARSE_UPDATES[rule.name]
    for p, g, s in zip(params, grads, states):
        sparse_update(rule, p, g, s)


def _abs_sq(rule, params, grads, states) -> None:
    update = UPDATES[rule.name]
    for p, g, s in zip(params, grads, states):
        update(AbsSqOps, rule, p, g, s)


def _differentiable(rule, params, grads, states) -> None:
    _loop(rule, params, grads, states, AutogradOps)


def _loop(rule, params, grads, states, ops=TensorOps) -> None:
    """torch.optim's ``foreach=False``: the math once per tensor with ``TensorOps``.

    A complex parameter is stepped as its real view after the gradient's prologue
    (``-g``, ``+ weight_decay * p``) in complex arithmetic, in torch.optim's
    ``_single_tensor_*`` order (complex ``g + wd * p`` can round differently from the same
    sum over the real view); wholly in complex arithmetic for a rule in
    ``COMPLEX_ARITHMETIC``."""
    update = UPDATES[rule.name]
    real_rule = None
    as_real = rule.name not in COMPLEX_ARITHMETIC
    for p, g, s in zip(params, grads, states):
        if as_real and p.is_complex():
            if real_rule is None:
                # decoupled decay stays in the rule: it acts on p, not on the gradient
                real_rule = rule.replace(
                    maximize=False, weight_decay=rule.weight_decay if rule.decoupled_weight_decay else 0.0
                )
            # The prologue once, on the complex tensors (a throwaway step counter: the
            # real step is counted by the update below, whose prologue is now a no-op).
            g, _ = effective_grads(ops, rule, p, g, torch.zeros(()))
            (p,), (g,), (s,) = _as_real(rule, [p], [g], [s])
            update(ops, real_rule, p, g, s)
        else:
            update(ops, rule, p, g, s)


def _foreach(rule, params, grads, states) -> None:
    """torch.optim's ``foreach=True``: the math once per (device, dtype) group (complex
    tensors as real views, as ``_multi_tensor_*`` views them before any math, unless the
    rule is in ``COMPLEX_ARITHMETIC``)."""
    if rule.name not in COMPLEX_ARITHMETIC:
        params, grads, states = _as_real(rule, params, grads, states)
    update = UPDATES[rule.name]
    names = state_keys(rule)
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p.device, p.dtype), []).append(i)
    for idx in groups.values():
        state = {name: [states[i][name] for i in idx] for name in names}
        update(ForeachOps, rule, [params[i] for i in idx], [grads[i] for i in idx], state)


def _fused(rule, params, grads, states, impl: str = "fused") -> None:
    """One pass over memory per tensor: the same math through ``torch.compile``
    (``fused.py``); ``RuntimeError`` where torch.compile is unavailable, and
    ``fused.CompileFailed`` (a ``RuntimeError``) when a compile fails at step time.
    ``impl``: who chose it (``"auto"`` steps per tensor: one graph per shape class)."""
    from . import fused

    fused.fused_step(rule, *_as_real(rule, params, grads, states), impl=impl)


#: Under ``impl="auto"``, a (device, dtype) group takes ``"fused"`` for its tensors of at
#: least ``AUTO_FUSED_MIN_TENSOR_NUMEL`` elements when those hold at least this many
#: elements in all; everything else in the group is stepped eagerly, bitwise torch.optim.
#: So no group below 2**20 elements ever compiles by default, and the first step compiles
#: at most one graph per shape class (flat, rows; ``fused.py``), whatever the number of
#: tensors. Why 2**20: the first fused step compiles (measured on the 2-core CPU, fp32,
#: docs/performance.md "When auto compiles"), and below that size the per-step saving
#: over the eager step does not pay a compile back within a normal run. One value for
#: every rule: a compile costs about the same whatever the rule.
AUTO_FUSED_MIN_NUMEL = 1 << 20

#: A tensor smaller than this stays eager under ``"auto"`` even in a large group: the
#: fused step's per-call cost (~10-30 us on a CPU) is what it saves on it.
AUTO_FUSED_MIN_TENSOR_NUMEL = 1 << 16

#: Below the fused threshold, a group of at most this many tensors takes ``"loop"``, a
#: larger one ``"foreach"``. Measured (64-element tensors, median us loop / foreach):
#: Adagrad 2 tensors 54 / 74, 4: 83 / 92, 8: 142 / 132; Adadelta 2: 84 / 96, 4: 139 / 125;
#: RMSprop 2: 60 / 71, 4: 93 / 90. A foreach op costs more to launch than a single-tensor
#: op and saves a launch per tensor; one 1e5-element tensor: loop 121, foreach 154.
AUTO_LOOP_MAX_TENSORS = 3


#: The dtypes for which ``"auto"`` may pick ``"fused"``. Inductor computes 16-bit
#: elementwise math in float32 and rounds once at the store, where the eager impls round
#: after every op: in float16 and bfloat16 the fused result is a different number (the
#: float16 RMSprop step with a zero gradient is NaN eagerly, as in torch.optim, because
#: eps = 1e-8 rounds to 0, and finite fused). The size of a tensor must never change what
#: a step computes, so these dtypes stay eager at every size.
AUTO_FUSED_DTYPES = (torch.float32, torch.float64)

logger = logging.getLogger("impl_torch")

# Reasons already logged at WARNING, once each.
_WARNED = caches.WARNED


def _eager(count: int) -> Callable:
    return _loop if count <= AUTO_LOOP_MAX_TENSORS else _foreach


class _AutoFused:
    """``"auto"``'s fused part of one group. A compile that fails at step time
    (``fused.CompileFailed``: no usable compiler, a cache it cannot write, a graph the
    compiler refuses) sends this group's tensors not stepped yet through the eager impl,
    says once at WARNING which kernel failed, and keeps this group eager from then on; the
    step completes, each tensor stepped once. Other groups and optimizers keep fusing:
    only that kernel is not compiled again in this process (``fused._FAILED``), so another
    rule or structure still compiles."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, rule, params, grads, states) -> None:
        if self.failed:
            _eager(len(params))(rule, params, grads, states)
            return
        from . import fused

        try:
            _fused(rule, params, grads, states, impl="auto")
        except fused.CompileFailed as exc:
            self.failed = True
            reason = f"{exc} ({exc.__cause__!r})" if exc.__cause__ is not None else str(exc)
            if str(exc) not in _WARNED:
                _WARNED.add(str(exc))
                logger.warning("impl_torch: %s; impl='auto' steps this group eagerly (loop/foreach, "
                               "torch.optim's result) from now on", reason)
            done = set(exc.stepped)
            rest = [i for i in range(len(params)) if i not in done]
            if rest:
                _eager(len(rest))(rule, [params[i] for i in rest], [grads[i] for i in rest],
                                  [states[i] for i in rest])


def _auto(rule, params, grads, states) -> None:
    """The default: per (device, dtype) group, ``"fused"`` for its tensors of at least
    ``AUTO_FUSED_MIN_TENSOR_NUMEL`` elements when they hold ``AUTO_FUSED_MIN_NUMEL``
    elements in all (float32 and float64 only, ``AUTO_FUSED_DTYPES``, on a device the fused
    impl supports, where Inductor can compile: ``fused.unavailable_reason()``), and
    ``"loop"`` for up to ``AUTO_LOOP_MAX_TENSORS`` other tensors, ``"foreach"`` for more.
    The default must work everywhere, while an explicit ``impl="fused"`` raises."""
    run_plan(_auto_plan(rule, params), rule, params, grads, states)


def _auto_plan(rule, params) -> list[tuple[Callable, list[int] | None]]:
    """``_auto``'s choice for ``params``: ``(impl function, indices)`` per part of each
    (device, dtype) group, indices None when one part holds them all. Depends on the rule's
    name and the parameters' devices, dtypes and sizes only; asks whether Inductor can
    compile (``fused.unavailable_reason``, probed once per process, logging one WARNING
    when it cannot) only for a group large enough to want it."""
    from . import fused

    threshold = AUTO_FUSED_MIN_NUMEL
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p.device, p.dtype), []).append(i)
    plan = []
    for (device, dtype), idx in groups.items():
        big = [i for i in idx if params[i].numel() >= AUTO_FUSED_MIN_TENSOR_NUMEL]
        if (
            dtype in AUTO_FUSED_DTYPES
            and fused.supports_device(device)
            and sum(params[i].numel() for i in big) >= threshold
            and _can_compile(fused)
        ):
            plan.append((_AutoFused(), big))
            idx = [i for i in idx if params[i].numel() < AUTO_FUSED_MIN_TENSOR_NUMEL]
            if not idx:
                continue
        plan.append((_eager(len(idx)), idx))
    if len(plan) == 1 and len(plan[0][1]) == len(params):
        return [(plan[0][0], None)]
    return plan


def _can_compile(fused) -> bool:
    reason = fused.unavailable_reason()
    if reason is None:
        return True
    if reason not in _WARNED:
        _WARNED.add(reason)
        logger.warning("impl_torch: torch.compile is unavailable here (%s); impl='auto' steps "
                       "eagerly (loop/foreach, torch.optim's result)", reason)
    return False


_IMPL_TABLE: dict[str, Callable] = {"loop": _loop, "foreach": _foreach, "fused": _fused, "auto": _auto}

_PART_NAMES = {_loop: "loop", _foreach: "foreach", _sparse: "sparse", _abs_sq: "abs_sq",
               _differentiable: "differentiable"}


class _ImplNames(Sequence):
    """A live, read-only view of the registered impl names (compares equal to a tuple)."""

    def __getitem__(self, index):
        return tuple(_IMPL_TABLE)[index]

    def __len__(self) -> int:
        return len(_IMPL_TABLE)

    def __contains__(self, name) -> bool:
        return name in _IMPL_TABLE

    def __eq__(self, other) -> bool:
        if isinstance(other, (tuple, list, _ImplNames)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


#: The available impl names, ("loop", "foreach", "fused", "auto") plus any registered later.
IMPLS = _ImplNames()


def register_impl(name: str, fn: Callable, *, replace: bool = False) -> None:
    """Make ``fn(rule, params, grads, states)`` available as ``impl=name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"impl name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"impl {name!r} must be callable, got {type(fn).__name__}")
    if name in _IMPL_TABLE and not replace:
        raise ValueError(f"impl {name!r} is already registered (pass replace=True)")
    _IMPL_TABLE[name] = fn


def check_impl(impl) -> str:
    """``impl`` if it names a registered impl, else ``ValueError`` listing the names."""
    if impl not in _IMPL_TABLE:
        raise ValueError(f"impl must be one of {tuple(_IMPL_TABLE)}, got {impl!r}")
    return impl


def check_differentiable(impl: str) -> None:
    """``ValueError`` unless ``impl`` can run ``differentiable=True`` (``"loop"``,
    ``"auto"``): the foreach and compiled kernels are not differentiable (torch.optim
    refuses ``foreach``/``fused`` with ``differentiable`` too)."""
    if impl not in ("loop", "auto"):
        raise ValueError(
            f"differentiable=True runs the per-tensor math (impl 'loop' or 'auto'), "
            f"not impl={impl!r}; pass one of them"
        )


def check_devices(impl: str, params) -> None:
    """``RuntimeError`` naming the parameter and its device when ``impl="fused"`` is asked
    for a device the fused impl does not support (``fused.SUPPORTED_DEVICE_TYPES``), as
    torch.optim's ``fused=True`` raises; checked before anything is modified."""
    if impl != "fused":
        return
    from . import fused

    for i, p in enumerate(params):
        fused.check_device(p, f"params[{i}]")


def step(
    rule, params, grads, states, impl: str = "loop", *, check: bool = True,
    differentiable: bool = False,
) -> None:
    """One step of ``rule`` for every (param, grad, state), in place.

    ``params``: list of floating or complex tensors (complex ones are stepped as real
    views, ``torch.view_as_real``, as torch.optim does); ``grads``: list of tensors like
    them (an entry ``None`` skips that parameter, as torch.optim skips
    ``p.grad is None``; Adagrad also takes sparse COO gradients, torch.optim's sparse
    Adagrad); ``states``: list of dicts from ``init_state``. Arguments are validated before
    anything is modified (about 3-4 us per tensor on a CPU); ``check=False`` skips that
    for callers that built the lists themselves (timing loops) and must then pass lists
    without ``None`` grads. Runs under ``torch.no_grad()``; with ``differentiable=True``
    (impl ``"loop"`` or ``"auto"``) under ``torch.enable_grad()`` through
    ``AutogradOps``, so that the new parameters and state are differentiable functions of
    the old ones and of the gradients (torch.optim's ``differentiable=True``).
    """
    check_rule(rule)
    check_impl(impl)
    if differentiable:
        check_differentiable(impl)
    if check:
        params, grads, states = _check(rule, params, grads, states)
        check_devices(impl, params)
    if not params:
        return
    stepped, first = with_first_state(rule, params, states)
    params, grads, local = local_views(rule, params, grads, stepped)
    for i in first:  # every check passed: the new state is the caller's now
        states[i].update(stepped[i])
    with torch.set_grad_enabled(differentiable):
        run_plan(plan(rule, impl, params, grads, differentiable=differentiable), rule, params, grads, local, first)
