"""The ``"fused"`` impl: one pass over memory per tensor, via ``torch.compile``.

The rule's math is NOT written again here: each tensor's step calls the same
``update(ops, rule, param, grad, state)`` as ``"loop"`` (each rule's module,
``impl_torch/<rule>.py``, registered in ``updates.UPDATES``), traced by TorchDynamo and lowered by Inductor into one elementwise kernel
(vectorised C++/OpenMP on a CPU, Triton on CUDA) that reads ``p``, ``g`` and each state
tensor once and writes ``p`` and each state once (fp32 Adagrad/RMSprop: 20 B per element,
Adadelta 28 B), where the eager loop makes several passes with temporaries.

How the trace is made to stay valid across steps (no recompilation when a hyperparameter
changes or the step advances):

- ``_CompiledOps`` is ``TensorOps`` with the step count kept a tensor: ``values(step)``
  returns the step as a float64 0-dim tensor (not ``.item()``), so Adagrad's
  ``clr = lr / (1 + (t-1)*lr_decay)`` is computed inside the graph in float64, as the loop
  computes it in Python floats, and cast to the working dtype where it meets the tensors,
  as the loop's scalar argument is.
- Every numeric field of the rule (``lr``, ``eps``, ``weight_decay``, ``lr_decay``,
  ``rho``, ``alpha``, ``momentum``, ...) is passed in as a 0-dim CPU tensor
  (``_RuleView``): float64 where the rule computes with it (``1 - alpha``), else already in
  the working dtype (``_hyper_dtype``). A compiled function exists per rule *structure*
  (``_key``: booleans, ``state_names`` and the ``has_*`` properties of
  ``rules.<Rule>.STRUCTURE``, e.g. momentum on or off), so a schedule that cycles
  ``momentum`` or ``alpha`` never recompiles. The scalars reach the in-place ops as
  tensors, for which ``_CompiledOps`` spells ``add_(x, y, alpha=a)`` as ``x += y * a``,
  ``addcdiv_(x, a, b, value=v)`` as ``x += (v * a) / b`` (the CPU kernel's order) and
  ``lerp_``'s branch on ``|w| < 0.5`` as a ``where`` on the runtime weight.
- Each compiled function gets its own copy of the code object
  (``torch_private.fresh_function``), so that Dynamo's per-code-object cache
  (``torch._dynamo.config.recompile_limit``, 8) is not shared by all of them.
- Shapes: contiguous tensors are stepped as flat 1-D views and compiled with
  ``dynamic=True``: one graph per (structure, dtype, device, step dtype (None without a
  step count), thread count)
  covers every size >= 2 (sizes 0 and 1 are specialised by Dynamo: graphs of their own).
  Large tensors whose size is a multiple of ``ROW`` are stepped as ``(n // ROW, ROW)``
  views instead, dynamic in the first dimension only (``_make_rows``: a loop with no
  masked tail). Non-contiguous tensors are passed as they are (Dynamo guards on their
  strides: a graph per layout). Under ``impl="fused"`` a list of ``MANY_MIN_TENSORS`` to
  ``MANY_MAX_TENSORS`` contiguous tensors is one graph of fixed shapes (``_make_many``);
  ``"auto"`` steps per tensor, so its first step compiles one graph per shape class.

How a step is called: Dynamo's frame evaluation and guard check cost far more than the
kernel on small tensors (measured at one thread, 16 fp32 elements: 75-150 us per call
through ``torch.compile`` against ~3 us of C++). So a compiled step of contiguous tensors
goes through Dynamo once, to be traced and compiled, and is then called directly
(``torch_private.compiled_call``: the Inductor-compiled function, with the arguments in the
order Dynamo passed them), the key above standing in for Dynamo's guards; on a torch
version ``torch_private`` does not know, the guarded call. Inductor's options are applied
while it compiles only, the compile key is cached per rule, and the scalar tensors are
reused while their values are unchanged (``_hyper_tensor``). Non-contiguous tensors keep
Dynamo's guarded call.

Bitwise agreement with ``"loop"`` is not expected (Inductor may contract to FMAs and uses
its own vectorised ``sqrt``/division); agreement is within ``rules.tolerance`` (see
tests/test_torch_fused.py for the measured ulps).

Availability: ``check_available()`` raises ``RuntimeError`` naming the reason when
``torch.compile`` cannot be used here (no working Dynamo on this Python/platform; no C++
compiler for Inductor's CPU backend, one that fails on a one-line file, or a cache
directory it cannot write: ``torch_private.compiler_problem``, probed once per process).
The optimizer classes call it at construction when ``fused`` is selected; the functional
``step(..., impl="fused")`` calls it on every call. ``impl="fused"`` never falls back to
an eager impl; a compile that fails at step time raises ``CompileFailed``, on which
``"auto"`` steps the rest eagerly (``functional._AutoFused``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import torch
from torch import Tensor

from . import caches, torch_private
from .ops import TensorOps

__all__ = [
    "SUPPORTED_DEVICE_TYPES",
    "check_available",
    "check_device",
    "fused_step",
    "compiled_count",
    "unavailable_reason",
]

#: Logs each compilation at INFO: what was compiled and how long it took (the first step
#: of a new configuration costs seconds). ``logging.basicConfig(level=logging.INFO)``, or
#: ``logging.getLogger("impl_torch").setLevel(logging.INFO)`` with a handler, shows it.
logger = logging.getLogger(__name__)


def _is_one(v) -> bool:
    return type(v) is int and v == 1


class _CompiledOps(TensorOps):
    """``TensorOps`` for tracing: the step stays a tensor, and ``lr``/``clr`` (0-dim float64
    tensors) are used as operands of tensor arithmetic rather than as the
    ``alpha=``/``value=`` keyword scalars of the in-place kernels (which take Python
    numbers only); they are cast to the working dtype first, as the kernels cast their
    scalar argument. The spelled-out forms keep the CPU kernels' order: ``add(x, y, alpha=a)`` is ``x + a*y``,
    ``addcmul(x, a, b, value=v)`` ``x + (v*a)*b``, ``addcdiv(x, a, b, value=v)``
    ``x + (v*a)/b`` and ``lerp(x, y, w)`` ``x + w*(y-x)`` for ``|w| < 0.5``, else
    ``y - (y-x)*(1-w)``."""

    @staticmethod
    def values(step: Tensor) -> Tensor:
        # float64, like the loop's Python float (step.item() of float32/float64 is exact).
        return step.to(torch.float64)

    @staticmethod
    def scalar_map(fn, values):
        """``fn(values)``, a scalar computed from the step once per call. Inductor inlines a
        pointwise expression of a 1-element input into the elementwise loop that reads it,
        so Adam's ``1 - beta**t`` was two ``std::pow`` per vector of 16 elements (1e7 fp32,
        one thread: 34 ms a step against torch.optim's fused 11 ms). The maximum of the
        value with itself is the value, bit for bit (NaN included), and a reduction is a
        kernel of its own: the loop then loads a computed number."""
        out = fn(values)
        if isinstance(out, Tensor) and out.dim() == 1:
            return torch.amax(out.expand(2), dim=0, keepdim=True)
        return out

    @staticmethod
    def _scalar(v, like: Tensor):
        if not isinstance(v, Tensor):
            return v
        if v.dim() == 0:
            # A 0-dim CPU tensor (lr, or -lr) is a scalar operand on every device.
            return v.to(like.dtype)
        # Computed from the 1-element CPU step view (Adagrad's clr under lr_decay): moved
        # explicitly to the tensors' device, never left to mix devices inside the graph.
        return v.to(device=like.device, dtype=like.dtype)

    @staticmethod
    def add(x: Tensor, other, alpha: float = 1) -> Tensor:
        if not isinstance(other, Tensor):
            return x + other
        if other.dim() == 0:  # a hyperparameter (eps): every stepped tensor is >= 1-D here
            return x + _CompiledOps._scalar(other, x)
        if _is_one(alpha):
            return x + other
        return x + other * _CompiledOps._scalar(alpha, x)

    @staticmethod
    def add_(x: Tensor, other, alpha: float = 1) -> Tensor:
        return x.copy_(_CompiledOps.add(x, other, alpha))

    @staticmethod
    def mul(x: Tensor, other) -> Tensor:
        return x * _CompiledOps._scalar(other, x)

    @staticmethod
    def div(x: Tensor, other) -> Tensor:
        # RMSprop's ``1 - alpha**t`` comes from the 1-element CPU step view: on the tensors'
        # device and dtype, or it would mix devices (CUDA) or promote the kernel's
        # arithmetic to float64 (CPU).
        return x / _CompiledOps._scalar(other, x)

    @staticmethod
    def mul_(x: Tensor, other) -> Tensor:
        return x.copy_(x * _CompiledOps._scalar(other, x))

    @staticmethod
    def div_(x: Tensor, other) -> Tensor:
        return x.copy_(_CompiledOps.div(x, other))

    @staticmethod
    def maximum_(x: Tensor, other: Tensor) -> Tensor:
        # out= of an input is an in-place op Dynamo would have to functionalise; a copy_ is
        # what every other in-place op here lowers to
        return x.copy_(torch.maximum(x, other))

    @staticmethod
    def addcmul(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        if _is_one(value):
            return x + a * b
        return x + (a * _CompiledOps._scalar(value, x)) * b

    @staticmethod
    def addcmul_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        return x.copy_(_CompiledOps.addcmul(x, a, b, value))

    @staticmethod
    def addcdiv_(x: Tensor, a: Tensor, b: Tensor, value: float = 1) -> Tensor:
        if _is_one(value):
            return x.copy_(x + a / b)
        return x.copy_(x + (a * _CompiledOps._scalar(value, x)) / b)

    @staticmethod
    def lerp_(x: Tensor, end: Tensor, weight) -> Tensor:
        # The kernel's branch on |w| < 0.5, taken on the runtime weight (a tensor).
        diff = end - x
        if not isinstance(weight, Tensor):
            # A Python number: the rule itself, traced inside a user's torch.compile.
            return x.copy_(x + diff * weight if abs(weight) < 0.5 else end - diff * (1 - weight))
        w = _CompiledOps._scalar(weight, x)
        return x.copy_(torch.where(w.abs() < 0.5, x + diff * w, end - diff * (1 - w)))


class _RuleView:
    """The rule as the compiled step sees it (built inside the trace): its structure
    (booleans, ``state_names``, ``has_*``) as Python values, every numeric field a 0-dim
    tensor input."""

    def __init__(self, structure: dict, numeric: tuple[str, ...], values):
        for name, value in structure.items():
            setattr(self, name, value)
        for name, value in zip(numeric, values):
            setattr(self, name, value)


# --- availability ------------------------------------------------------------------------

_PROBE_LOCK = threading.Lock()
_PROBED = caches.PROBE


def _probe() -> str | None:
    """None when Inductor can compile here, else the reason (once per process)."""
    with _PROBE_LOCK:
        if not _PROBED:
            _PROBED.append(torch_private.compiler_problem())
        return _PROBED[0]


def unavailable_reason() -> str | None:
    """Why ``impl="fused"`` cannot run here, or None when it can: torch.compile works on
    this platform, and Inductor's C++ compiler (found as Inductor finds it, ``CXX`` or
    ``torch._inductor.config.cpp.cxx`` first) compiles a one-line file into its cache
    directory, which must be writable (``torch_private.compiler_problem``). Probed once
    per process (a compiler run, ~0.1-0.5 s), when first asked."""
    if torch.compiler.is_dynamo_compiling():
        return None  # traced by a user's torch.compile, which therefore works
    return _probe()


def check_available() -> None:
    """``RuntimeError`` naming the reason unless ``impl="fused"`` can run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"impl='fused' (torch.compile) is unavailable: {reason}")


#: Device types Inductor generates kernels for (C++/OpenMP on ``cpu``, Triton on ``cuda``
#: and ``xpu``). torch.optim's ``fused=True`` raises for others (e.g. ``meta``); so does
#: ``check_device``, except for ``meta`` under ``impl_torch.testing.stand_in_device()``.
SUPPORTED_DEVICE_TYPES = ("cpu", "cuda", "xpu")

#: The stand-in device's type, accepted while ``impl_torch.testing.stand_in_device()`` is
#: open (a count: the context nests); its steps are traced, never code-generated.
STAND_IN_DEVICE_TYPE = "meta"
_STAND_IN = caches.STAND_IN


def supports_device(device: torch.device) -> bool:
    """Whether the fused impl steps tensors on ``device``."""
    return device.type in SUPPORTED_DEVICE_TYPES or (
        device.type == STAND_IN_DEVICE_TYPE and _STAND_IN[0] > 0
    )


def check_device(param: Tensor, where: str = "param") -> None:
    """``RuntimeError`` naming ``where`` and its device unless the fused impl can step a
    tensor on that device."""
    if not supports_device(param.device):
        raise RuntimeError(
            f"impl='fused' (fused=True) supports parameters on {SUPPORTED_DEVICE_TYPES} "
            f"devices, but {where} is on {param.device}"
        )


class CompileFailed(RuntimeError):
    """A compiled step could not be compiled (Inductor, its C++ compiler or its cache
    failed at step time). ``stepped``: the indices, in the lists given to
    ``fused_step``, of the tensors already stepped before the failure (each exactly once);
    the others are unchanged. The original exception is ``__cause__``."""

    def __init__(self, message: str, stepped: list[int]):
        super().__init__(message)
        self.stepped = stepped


# --- compiled step per configuration -----------------------------------------------------

_COMPILED = caches.COMPILED

#: Inductor compilations made by this module (every graph, the Dynamo-guarded ones for
#: non-contiguous tensors included): a step that raises it compiled (``fused_step`` logs).
_COMPILES = caches.COMPILES


def _count_compile() -> None:
    _COMPILES[0] += 1


def compiled_count() -> int:
    """How many compiled step functions (kernels: configuration x shape class) exist."""
    return len(_COMPILED)


#: Inductor options of the dynamic-shape (per-tensor) graph. Inductor's C++ backend decides
#: at code-generation time whether a loop gets an OpenMP ``parallel`` region, from the
#: thread count and the size *hint* of the first input it compiled for
#: (``CppKernel.decide_parallel_depth``: serial unless ``hint // threads >=
#: cpp.min_chunk_size``, 512). Under ``dynamic=True`` the kernel compiled for a first
#: call's 100 elements (or at one thread) was then reused for every size, in the process
#: and, through the FX graph cache whose key holds the thread count but not the hint, by
#: every later process: a 1e7-element step ran serial at two threads. With
#: ``cpp.dynamic_threads`` the loop always gets a ``#pragma omp parallel`` region sized by
#: the OpenMP runtime (``torch.set_num_threads``) when it runs, so the one kernel fits
#: every size and thread count. See docs/performance-kernels.md.
_DYNAMIC_SHAPE_OPTIONS = {"cpp.dynamic_threads": True}


def _one_step_function(full_key):
    from .updates import UPDATES

    structure, numeric = dict(full_key[0][0]), full_key[0][1]
    update = UPDATES[structure["name"]]
    names = structure["state_names"]

    def one_step(p, g, step, hypers, *state_tensors):
        rule = _RuleView(structure, numeric, hypers)
        # ``step`` is None for a rule that counts no steps (torch.optim.SGD)
        state = {} if step is None else {"step": step}
        for n, t in zip(names, state_tensors):
            state[n] = t
        update(_CompiledOps, rule, p, g, state)

    return torch_private.fresh_function(one_step, f"fused_{structure['name']}_{len(_COMPILED)}")


def _make(full_key, codegen: bool):
    """The per-tensor step of contiguous tensors: one dynamic-shape graph for every size
    >= 2, static graphs for sizes 0 and 1."""
    dynamic = full_key[-1] >= 2
    return torch_private.compiled_call(_one_step_function(full_key), dynamic=dynamic,
                                       options=_DYNAMIC_SHAPE_OPTIONS, on_compile=_count_compile,
                                       codegen=codegen)


#: Row length of ``_make_rows``' views: a multiple of every vector length Inductor's C++
#: backend uses (16 fp32 lanes under AVX-512, 32 for 16-bit types), so the loop over
#: ``m * ROW`` elements has no remainder.
ROW = 64

#: Contiguous tensors of at least this many elements whose size ``ROW`` divides are
#: stepped as ``(n // ROW, ROW)`` rows (``_make_rows``); smaller ones keep the flat graph,
#: so that a model of small tensors compiles one graph, not two. Other sizes keep the flat
#: graph too: the remainder would need a second call, and a slice that starts past the
#: storage's beginning makes Dynamo pass its storage offset as one more symbolic input.
ROWS_MIN_NUMEL = 1 << 16


def _make_rows(full_key, codegen: bool):
    """The per-tensor step of a large contiguous tensor of ``ROW * m`` elements, as
    ``(m, ROW)`` views dynamic in ``m`` only (one graph for every ``m``). Under
    ``dynamic=True`` Inductor cannot know that the flat size is a multiple of the vector
    length: its C++ loop tests every vector for being the masked tail (compares and
    branches in the hot loop, and a masked-tail body after the main one); with the size
    ``ROW * m`` the tail and its test are gone. Measured at 1e7 fp32 elements: see
    docs/performance-kernels.md (section 1c)."""
    return torch_private.compiled_call(_one_step_function(full_key), dynamic=None,
                                       options=_DYNAMIC_SHAPE_OPTIONS, on_compile=_count_compile,
                                       rows=True, codegen=codegen)


def _make_guarded(full_key, codegen: bool):
    """The per-tensor step of non-contiguous tensors, through Dynamo on every call: it
    guards on their strides (a graph per layout)."""
    return torch.compile(
        _one_step_function(full_key),
        backend=torch_private.inductor_backend(_DYNAMIC_SHAPE_OPTIONS, _count_compile, codegen=codegen),
        dynamic=True, fullgraph=True,
    )


@caches.memoized(maxsize=1024)
def _key(rule) -> tuple:
    """The compile key: the rule's structure (its name, booleans, ``state_names`` and
    ``has_*`` properties, ``rules.<Rule>.STRUCTURE``), and the names of its numeric fields,
    which are inputs (:func:`_hyper_tensors`). Cached per rule (frozen, hashable)."""
    structure = {"name": rule.name, "state_names": tuple(rule.state_names)}
    numeric = []
    for field in dataclasses.fields(rule):
        value = getattr(rule, field.name)
        if type(value) is bool:
            structure[field.name] = value
        else:
            numeric.append(field.name)
    for name in rule.STRUCTURE:
        structure[name] = getattr(rule, name)
    return tuple(sorted(structure.items())), tuple(numeric)


def _get(key, make, device: torch.device):
    fn = _COMPILED.get(key)
    if fn is None:
        failed = _FAILED.get(key)
        if failed is not None:
            raise _KnownFailure(failed)
        # The stand-in device is traced only: nothing generates code for it.
        fn = _COMPILED.setdefault(key, make(key, device.type != STAND_IN_DEVICE_TYPE))
    return fn


#: Kernels whose compile failed at step time, by key, with the exception it raised: that
#: kernel is not compiled again in this process (each try costs seconds), while every other
#: kernel (another rule, structure, dtype, device or shape class) still compiles.
_FAILED = caches.FAILED


class _KnownFailure(Exception):
    """Raised by ``_get`` for a kernel in ``_FAILED``; ``fused_step`` turns it into a
    ``CompileFailed`` naming the tensors this call stepped."""

    def __init__(self, failure: "CompileFailed"):
        super().__init__(str(failure))
        self.failure = failure


_HYPERS = caches.HYPERS

def _hyper_dtype(rule, name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype hyperparameter ``name`` enters the graph in: the working dtype when it is
    float32 or float64 and the rule only ever multiplies or adds the field
    (``rule.multiplier_only``, the specification's word), else float64 (as the loop
    computes with Python floats). Rounding such a field once to the working dtype gives the
    same number, and the kernel no longer loads and converts a double in its inner loop
    (measured at 1e7 fp32, one thread, in a hand-compiled copy of Inductor's kernel, for
    lr: 4.80 ms against 4.68 ms; torch.optim's fused Adagrad 4.66 ms). 16-bit steps keep
    float64: Inductor computes them in float32 and does not round a float64 scalar to 16
    bits on the way (tested: a 16-bit ``lr`` changes the result)."""
    if dtype in (torch.float32, torch.float64) and rule.multiplier_only(name):
        return dtype
    return torch.float64


def _hyper_tensor(name: str, value: float, dtype: torch.dtype) -> Tensor:
    """``value`` as the 0-dim CPU tensor of ``dtype`` the compiled steps take for field
    ``name``. One tensor per (field, value, dtype), made here and only ever read (never a
    tensor the user holds), so reusing it while the value is unchanged is safe; a new value
    gets a new tensor. Bounded: a schedule that changes a value every step would otherwise
    keep one tensor per step. Per field, so that two fields of equal value are two inputs
    (one tensor in two places would send the step through Dynamo, ``torch_private``)."""
    key = (name, value, dtype)
    t = _HYPERS.get(key)
    if t is None:
        if len(_HYPERS) >= caches.HYPERS_MAX:
            _HYPERS.clear()
        t = _HYPERS[key] = torch.tensor(value, dtype=dtype)
    return t


def _hyper_tensors(rule, numeric: tuple[str, ...], dtype: torch.dtype) -> list[Tensor]:
    """The rule's numeric fields (``_key``'s order) as the compiled step's inputs."""
    return [_hyper_tensor(n, float(getattr(rule, n)), _hyper_dtype(rule, n, dtype)) for n in numeric]


def _flat(t: Tensor) -> Tensor:
    return t if t.dim() == 1 else t.view(-1)


def _make_many(full_key, codegen: bool):
    """One compiled function stepping a whole list of tensors (shapes fixed): one call,
    one generated C++/Triton wrapper for all of them, instead of one compiled call per
    tensor. Compile time grows with the list (about 0.2 s a tensor on the 2-core CPU), so
    only ``impl="fused"`` takes it, for lists up to ``MANY_MAX_TENSORS``."""
    from .updates import UPDATES

    structure, numeric = dict(full_key[1][0]), full_key[1][1]  # full_key[0] is "many"
    update = UPDATES[structure["name"]]
    names = structure["state_names"]

    def many_steps(ps, gs, steps, hypers, states):
        rule = _RuleView(structure, numeric, hypers)
        for i in range(len(ps)):
            # ``steps`` is empty for a rule that counts no steps (torch.optim.SGD)
            state = {"step": steps[i]} if steps else {}
            for j, n in enumerate(names):
                state[n] = states[j][i]
            update(_CompiledOps, rule, ps[i], gs[i], state)

    fn = torch_private.fresh_function(many_steps, f"fused_many_{structure['name']}_{len(_COMPILED)}")
    # The key fixes every input's shape (the tensors are contiguous), as Dynamo's guards
    # did; the generated wrapper's own per-input size/stride asserts would check them again.
    return torch_private.compiled_call(fn, dynamic=False, options={"size_asserts": False},
                                       on_compile=_count_compile, codegen=codegen)


#: Lists of at least this many contiguous tensors of one dtype and device, and at most
#: ``MANY_MAX_TENSORS``, are stepped by one compiled call (``_make_many``) under
#: ``impl="fused"``; compile time grows with the list (about 0.2 s a tensor), so a handful
#: of tensors keeps the per-tensor path, which one graph serves for every size, and so do
#: longer lists: the first step's compile stays bounded (200 tensors took 45 s as one
#: graph, 10,000 did not finish in 9 minutes). 128 keeps a 100-tensor model (the
#: benchmark's tfm100) one call.
MANY_MIN_TENSORS = 4
MANY_MAX_TENSORS = 128


def _log_compile(rule, impl, tensors, numel, dtype, device, seconds) -> None:
    logger.info(
        "compiled the %s %s step (impl=%r) for %d tensor%s, %d elements, %s on %s in %.2f s; "
        "later steps of this configuration reuse it",
        "fused" if impl == "fused" else "fused (auto)", rule.name, impl, tensors,
        "" if tensors == 1 else "s", numel, dtype, device, seconds,
    )


def fused_step(rule, params, grads, states, *, impl: str = "fused") -> None:
    """The ``"fused"`` impl: ``fn(rule, params, grads, states)`` for the dispatch table.

    ``impl`` names the impl that chose this path (``"fused"`` or ``"auto"``) for the INFO
    message logged when a step compiles (``logger``); under ``"auto"`` every list is
    stepped per tensor (one graph per shape class, whatever the number of tensors).
    Raises ``CompileFailed`` when a compile fails, the tensors stepped before it named."""
    if torch.compiler.is_dynamo_compiling():
        # Traced by a user's torch.compile: the same math goes into the user's graph,
        # which Inductor fuses there (no nested compile). The rule's hyperparameters are
        # constants of that graph (Dynamo guards on them, as on torch.optim's float lr),
        # and the step counters stay tensors (``_CompiledOps``), so nothing leaves it.
        from .updates import UPDATES

        update = UPDATES[rule.name]
        for p, g, s in zip(params, grads, states):
            update(_CompiledOps, rule, p, g, s)
        return
    check_available()
    before, start = _COMPILES[0], time.perf_counter()
    stepped: list[int] = []
    kernel: list = [None]  # the key of the kernel being called
    try:
        with torch.no_grad():  # the compiled steps are inference graphs
            _fused_groups(rule, params, grads, states, impl == "fused", stepped, kernel)
    except CompileFailed:
        raise
    except _KnownFailure as known:
        raise CompileFailed(str(known.failure), list(stepped)) from known.failure.__cause__
    except Exception as exc:
        if _COMPILES[0] == before and not _compiling_error(exc):
            raise
        failure = CompileFailed(
            f"compiling the fused {rule.name} step ({_describe(kernel[0])}) failed ({_first_lines(exc)})",
            list(stepped),
        )
        failure.__cause__ = exc
        if kernel[0] is not None:
            _COMPILED.pop(kernel[0], None)
            _FAILED[kernel[0]] = failure
        raise failure from exc
    if _COMPILES[0] != before and logger.isEnabledFor(logging.INFO):
        _log_compile(rule, impl, len(params), sum(p.numel() for p in params),
                     params[0].dtype, params[0].device, time.perf_counter() - start)


def _first_lines(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``, and Dynamo's ``Explanation:`` line where it gives
    one: its first line is generic ("RuntimeError when making fake tensor call"), the
    explanation says what went wrong (e.g. a device mismatch met while tracing)."""
    lines = [text.strip() for text in str(exc).strip().splitlines()]
    out = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    explanation = next((text for text in lines if text.startswith("Explanation:")), None)
    return out if explanation is None else f"{out}; {explanation}"


def _describe(full_key) -> str:
    """A kernel's key (``_fused_groups``), for people: the switches that are on, the shape
    class, dtype and device. Made only for an error: the keys are built on every step."""
    if full_key is None:
        return "before any kernel"
    if full_key[0] == "many":
        _, (structure, _), dtype, device, _, _, shapes = full_key
        shape = f"{len(shapes)} tensors as one graph"
    else:
        (structure, _), dtype, device = full_key[:3]
        shape = ("non-contiguous" if len(full_key) == 4
                 else f"rows of {ROW}" if full_key[-1] == "rows" else "flat")
    on = [name for name, value in structure if value is True]
    return f"{', '.join(on) if on else 'no switches on'}, {shape}, {dtype} on {device}"


def _compiling_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from torch.compile's machinery (Dynamo, Inductor, its C++
    build) rather than from the step's own arithmetic."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(exc, (OSError,))


def _fused_groups(rule, params, grads, states, many: bool, stepped: list[int], kernel: list) -> None:
    """Steps the lists; ``stepped`` collects the indices done, ``kernel[0]`` holds the key
    of the compiled function being called (for ``fused_step``'s errors)."""
    key = _key(rule)
    numeric = key[1]
    names = rule.state_names
    counts = rule.STEP_IN_STATE
    # Dynamo guarded on the thread count (a recompile when it changes); so does the key.
    threads = torch.get_num_threads()
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        contiguous = p.is_contiguous() and grads[i].is_contiguous() and all(
            states[i][n].is_contiguous() for n in names
        )
        step_dtype = states[i]["step"].dtype if counts else None
        groups.setdefault((p.dtype, p.device, step_dtype, contiguous), []).append(i)
    for (dtype, device, step_dtype, contiguous), idx in groups.items():
        check_device(params[idx[0]], f"params[{idx[0]}]")  # the first on this device
    for (dtype, device, step_dtype, contiguous), idx in groups.items():
        hypers = _hyper_tensors(rule, numeric, dtype)
        if many and contiguous and MANY_MIN_TENSORS <= len(idx) <= MANY_MAX_TENSORS:
            # 1-D views of 0-dim tensors: Inductor takes a 0-dim float64 CPU input as a
            # Python scalar, and an in-place update of one would be lost (seen: a scalar
            # fp64 parameter never moved); the step counters likewise as 1-element views.
            shapes = tuple(tuple(params[i].shape) for i in idx)
            kernel[0] = ("many", key, dtype, device, step_dtype, threads, shapes)
            fn = _get(kernel[0], _make_many, device)
            # inline, not a function call per tensor: 100 tensors make 400 of these a step
            ps = [t if t.dim() else t.view(1) for t in (params[i] for i in idx)]
            gs = [t if t.dim() else t.view(1) for t in (grads[i] for i in idx)]
            steps = [states[i]["step"].view(1) for i in idx] if counts else []
            st = [[t if t.dim() else t.view(1) for t in (states[i][n] for i in idx)] for n in names]
            flat = ps + gs + steps + hypers + [t for ts in st for t in ts]
            fn(-1, flat, ps, gs, steps, hypers, st)
            stepped.extend(idx)
            continue
        if not contiguous:
            # one compiled function (own Dynamo cache) per configuration, dtype and device
            kernel[0] = (key, dtype, device.type, step_dtype)
            fn = _get(kernel[0], _make_guarded, device)
            for i in idx:
                fn(params[i], grads[i], states[i]["step"].view(1) if counts else None, hypers,
                   *[states[i][n] for n in names])
                stepped.append(i)
            continue
        for i in idx:
            p = params[i]
            n = p.numel()
            # ``flat``: every tensor input once (no step tensor for a rule without one)
            step = states[i]["step"].view(1) if counts else None
            flat = [_flat(p), _flat(grads[i]), *([step] if counts else []), *hypers]
            flat += [_flat(states[i][nm]) for nm in names]
            k = 2 + counts + len(hypers)  # where the state tensors start in ``flat``
            if n >= ROWS_MIN_NUMEL and n % ROW == 0:
                kernel[0] = (key, dtype, device, step_dtype, threads, "rows")
                fn = _get(kernel[0], _make_rows, device)
                flat = [t.view(-1, ROW) if t.numel() == n else t for t in flat]
                fn(n // ROW, flat, flat[0], flat[1], step, hypers, *flat[k:])
            else:
                # sizes 0 and 1 are specialised by Dynamo (graphs of their own); 2 stands
                # for every size from 2 up (the dynamic-shape graph)
                kernel[0] = (key, dtype, device, step_dtype, threads, min(n, 2))
                fn = _get(kernel[0], _make, device)
                fn(n, flat, flat[0], flat[1], step, hypers, *flat[k:])
            stepped.append(i)
