"""torch's private API that impl_torch calls, in one module, and what stays outside it.

Here, each private name looked up when it is used, inside a ``try``, so that a torch that
moved it degrades to the public path instead of failing at import:

- :func:`compiled_call`: a ``torch.compile``d step. On a torch version this module knows
  (:data:`KNOWN_VERSIONS`) the first call goes through Dynamo and later calls go straight
  to the Inductor-compiled function (:class:`_Direct`: ``compile_fx``, Dynamo's
  ``specialize_float`` and ``force_parameter_static_shapes`` options, ``mark_dynamic``).
  On any other version, or when a direct call meets an input it cannot place, the step
  is plain guarded ``torch.compile`` (Dynamo checks its guards at every call: ~40-70 us
  more per call on a CPU, the same numbers), said once at INFO. ``codegen=False`` traces
  through AOTAutograd's eager backend instead (the stand-in device, ``testing.py``).
- :func:`fresh_function`: a copy of a function with its own code object, so that each
  compiled configuration has a Dynamo cache of its own (``__code__.replace``).
- :func:`compiler_problem`: what stops Inductor's CPU backend here (its C++ compiler,
  found and tried the way Inductor finds it; its cache directory, writable), or None.
- :func:`step_hook_dicts`: torch.optim's global step pre-/post-hook dicts (``step_hooks.py``).
- :func:`profiler_enabled`: whether an autograd profiler records now.

Outside, on purpose, because they are the very interface torch.optim's own optimizers use
and have no public spelling (each is exercised by ``make test`` and
``make test-torch-latest``):

- ``torch._foreach_*`` (``ops.ForeachOps``): the multi-tensor kernels of torch.optim's
  ``foreach=True`` paths; bitwise agreement with them needs the same kernels.
- ``Optimizer.profile_hook_step`` and ``_step_supports_amp_scaling`` (``optimizer.py``):
  the names ``torch.optim.Optimizer`` and ``torch.amp.GradScaler`` look up on a subclass
  (its step wrapper, and the fused optimizers' AMP contract).
- ``Tensor._indices()``/``_values()`` of a coalesced sparse COO gradient (each rule's
  sparse step, ``optimizer._unscale_``): torch.optim's sparse Adagrad steps through them;
  the public ``values()`` differs in autograd and coalescing checks, not in values.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import types

import torch
from torch import Tensor

from . import caches

__all__ = [
    "KNOWN_VERSIONS",
    "compiled_call",
    "compiler_problem",
    "fresh_function",
    "inductor_backend",
    "profiler_enabled",
    "step_hook_dicts",
]

logger = logging.getLogger("impl_torch")

#: (major, minor) versions of torch whose internals :class:`_Direct` was tested against
#: (``make test``: 2.13; ``make test-torch-latest``: 2.14; the GPU machines carry 2.11).
KNOWN_VERSIONS = ((2, 11), (2, 12), (2, 13), (2, 14))


def _version() -> tuple[int, int]:
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


@caches.memoized(maxsize=None)
def direct_calls() -> bool:
    """Whether compiled steps are called without Dynamo after their first call (this torch
    is one of :data:`KNOWN_VERSIONS` and has the internals); said once at INFO if not."""
    if _version() not in KNOWN_VERSIONS:
        logger.info(
            "impl_torch: torch %s is not among the versions whose compiler internals the fused "
            "step was tested with %s; compiled steps go through torch.compile's guarded call "
            "(correct, ~50 us slower per call)", torch.__version__, KNOWN_VERSIONS,
        )
        return False
    try:
        from torch._inductor.compile_fx import compile_fx  # noqa: F401

        torch._dynamo.config.specialize_float  # noqa: B018
        torch._dynamo.config.force_parameter_static_shapes  # noqa: B018
        torch._inductor.config.patch  # noqa: B018
    except (ImportError, AttributeError) as exc:
        logger.info("impl_torch: torch %s lacks %s; compiled steps use the guarded call",
                    torch.__version__, exc)
        return False
    return True


def fresh_function(fn, name: str):
    """``fn`` with a code object of its own named ``name``: Dynamo keeps one cache (and
    one recompile limit, ``torch._dynamo.config.recompile_limit``) per code object."""
    code = fn.__code__.replace(co_name=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


# --- compiled calls ------------------------------------------------------------------------


def inductor_backend(options: dict, on_compile, *, codegen: bool = True):
    """A ``torch.compile`` backend: Inductor with ``options`` patched into its config while
    it compiles only (``torch.compile(options=...)`` patches them in and out on every call,
    ~20 us). ``on_compile()`` is called once per graph compiled.

    ``codegen=False``: AOTAutograd's eager backend (``aot_eager``) instead of Inductor. It
    generates no code, so it runs on the ``meta`` stand-in device (``impl_torch.testing``):
    Dynamo and AOTAutograd trace exactly the graph Inductor would receive, and their
    device checks (a CPU tensor joins device math only as a 0-dim scalar) run during that
    trace, before any backend."""

    def backend(gm, example_inputs):
        on_compile()
        if not codegen:
            from torch._dynamo.backends.debugging import aot_eager

            return aot_eager(gm, example_inputs)
        from torch._inductor.compile_fx import compile_fx

        with torch._inductor.config.patch(options):
            return compile_fx(gm, example_inputs)

    return backend


class _Guarded:
    """A step through ``torch.compile``'s guarded call every time (the public path)."""

    def __init__(self, fn, dynamic, options: dict, on_compile, rows: bool = False, codegen: bool = True):
        self._rows = rows
        if codegen:
            self._fn = torch.compile(fn, backend="inductor", dynamic=dynamic, fullgraph=True,
                                     options=options or None)
        else:
            self._fn = torch.compile(fn, backend="aot_eager", dynamic=dynamic, fullgraph=True)
        self._on_compile = on_compile
        self._seen = False

    def __call__(self, n: int, flat: list, *args) -> None:
        if not self._seen:
            self._seen = True
            self._on_compile()
        if self._rows:
            for t in flat:
                if t.dim() == 2:
                    torch._dynamo.maybe_mark_dynamic(t, 0)
        self._fn(*args)


class _Direct:
    """A compiled step called without Dynamo after its first call.

    A call through ``torch.compile``'s frame evaluation costs ~40-70 us on a CPU (guard
    check, ``eval_frame``) against ~3 us for a small generated C++ kernel. The first call
    goes through Dynamo, which traces and hands the graph to Inductor; the compiled
    function Dynamo would call, and the order in which Dynamo passed it our arguments, are
    kept; later calls pass the arguments straight to it.

    What Dynamo's guards checked at every call, the caller's key checks instead
    (``fused.py``: structure, dtype, device, step dtype, thread count and layout: only
    contiguous tensors come here, as flat 1-D views of one size ``n``, as ``(n, ROW)``
    views, or at their exact shapes). The compiled function still runs AOTAutograd's
    wrapper and Inductor's per-input asserts where enabled. Two threads calling it for
    the first time take turns (a lock), so each records its own call.
    """

    def __init__(self, fn, dynamic, options: dict, on_compile, rows: bool = False, codegen: bool = True):
        self._compiled = None
        self._guarded = False
        self._order: list[int] = []
        self._first: list = []
        self._rows = rows
        self._lock = threading.Lock()
        compile_graph = inductor_backend(options, on_compile, codegen=codegen)

        def backend(gm, example_inputs):
            compiled = compile_graph(gm, example_inputs)

            def record(*args):
                self._first[:] = [compiled, args]
                return compiled(*args)

            return record

        self._dynamo = torch.compile(fn, backend=backend, dynamic=dynamic, fullgraph=True)

    def __call__(self, n: int, flat: list, *args) -> None:
        """Steps with ``args``; ``flat``: every tensor among them, once; ``n``: their
        common size (the dynamic dimension)."""
        # The same tensor twice (two parameters sharing one gradient): Dynamo passes it
        # once, so the recorded order would route one tensor to both places later. Such
        # a call goes through Dynamo, whose guards cover aliasing.
        distinct = len(set(map(id, flat))) == len(flat)
        compiled = self._compiled
        if compiled is not None and distinct:
            compiled(*[flat[i] if i >= 0 else n for i in self._order])
            return
        with self._lock:
            self._through_dynamo(n, flat, args, distinct)

    def _through_dynamo(self, n, flat, args, distinct) -> None:
        if self._rows:
            for t in flat:
                if t.dim() == 2:
                    torch._dynamo.mark_dynamic(t, 0)
        # Dynamo would compile a static graph when an input is an ``nn.Parameter`` (a 1-D
        # one is passed as it is, not as a view), which the key then reuses for every
        # size; ``specialize_float`` keeps any float literal of the rule a constant.
        with torch._dynamo.config.patch(specialize_float=True, force_parameter_static_shapes=False):
            self._dynamo(*args)
        compiled, passed = self._first or (None, None)
        self._first = []
        if compiled is None or not distinct or self._compiled is not None or self._guarded:
            return
        order = []
        for a in passed:
            if isinstance(a, Tensor):
                index = next((i for i, t in enumerate(flat) if t is a), None)
            else:
                index = -1 if type(a) is int and a == n else None
            if index is None:
                # An input we cannot place (another torch's calling convention): this
                # step keeps Dynamo's guarded call, correct and slower.
                logger.info("impl_torch: a compiled step takes an input (%s) that is not one of "
                            "its tensors or their size (torch %s); it keeps Dynamo's guarded "
                            "call", type(a).__name__, torch.__version__)
                self._guarded = True
                return
            order.append(index)
        self._order, self._compiled = order, compiled


def compiled_call(fn, *, dynamic, options: dict, on_compile, rows: bool = False, codegen: bool = True):
    """``call(n, flat, *args)``: ``fn(*args)`` compiled by Inductor with ``options`` (full
    graph). ``dynamic``: ``torch.compile``'s; ``rows``: the 2-D tensors among ``flat`` are
    dynamic in their first dimension only. ``on_compile()`` is called once per graph
    compiled. ``codegen=False``: traced, not code-generated (:func:`inductor_backend`).
    Direct calls where :func:`direct_calls`, else the guarded call."""
    if direct_calls():
        return _Direct(fn, dynamic, options, on_compile, rows=rows, codegen=codegen)
    return _Guarded(fn, dynamic, options, on_compile, rows=rows, codegen=codegen)


# --- can Inductor compile here? -------------------------------------------------------------

_PROBE_SOURCE = 'extern "C" int impl_torch_probe(int x) { return x + 1; }\n'


def compiler_problem(timeout_s: float = 120.0) -> str | None:
    """What stops torch.compile's Inductor CPU backend from compiling here, or None.

    Finds the C++ compiler as Inductor does (``torch._inductor.cpp_builder.get_cpp_compiler``:
    ``CXX`` or ``torch._inductor.config.cpp.cxx``, then its search list), compiles and links
    a one-function shared library with it, and checks that Inductor's cache directory
    (``TORCHINDUCTOR_CACHE_DIR`` or its default) can be created and written. Costs one
    compiler run (~0.1-0.5 s); callers cache the answer. Before that: Dynamo imports and
    supports this platform and Python (``torch._dynamo.is_dynamo_supported``), not Windows."""
    try:
        import torch._dynamo
    except Exception as exc:  # pragma: no cover - depends on the platform
        return f"torch._dynamo cannot be imported ({type(exc).__name__}: {exc})"
    try:
        torch._dynamo.is_dynamo_supported()
    except Exception as exc:
        return f"torch.compile is not supported on this platform/Python {sys.version.split()[0]} ({exc})"
    if sys.platform == "win32":
        return "torch.compile's Inductor CPU backend is not supported on Windows by this impl"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.runtime.cache_dir_utils import cache_dir
    except ImportError as exc:  # pragma: no cover - another torch's layout
        return f"Inductor's C++ builder cannot be imported ({exc})"
    try:
        cxx = get_cpp_compiler()
    except Exception as exc:
        return f"Inductor finds no working C++ compiler ({type(exc).__name__}: {exc})".strip()
    try:
        root = cache_dir()
        if not os.access(root, os.W_OK | os.X_OK):
            return f"Inductor's cache directory {root!r} is not writable"
        with tempfile.TemporaryDirectory(dir=root, prefix="impl_torch_probe_") as tmp:
            src, out = os.path.join(tmp, "probe.cpp"), os.path.join(tmp, "probe.so")
            with open(src, "w") as f:
                f.write(_PROBE_SOURCE)
            try:
                run = subprocess.run([cxx, "-shared", "-fPIC", src, "-o", out], capture_output=True,
                                     text=True, timeout=timeout_s)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"the C++ compiler {cxx!r} cannot be run ({type(exc).__name__}: {exc})"
            if run.returncode != 0 or not os.path.exists(out):
                tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or [""]
                return f"the C++ compiler {cxx!r} fails on a one-line file (exit {run.returncode}: {tail[0]})"
    except OSError as exc:
        return f"Inductor's cache directory is not usable ({type(exc).__name__}: {exc})"
    return None


# --- torch.optim's hooks and the profiler ---------------------------------------------------


def step_hook_dicts() -> tuple[dict, dict]:
    """torch.optim's global step (pre-hooks, post-hooks) dicts
    (``register_optimizer_step_pre_hook``/``_post_hook`` write them); empty dicts on a
    torch without them."""
    from torch.optim import optimizer

    return (getattr(optimizer, "_global_optimizer_pre_hooks", {}),
            getattr(optimizer, "_global_optimizer_post_hooks", {}))


def profiler_enabled() -> bool:
    """Whether an autograd profiler records now (``torch.profiler.profile``); True when
    this torch cannot say, so that the profiler range is then always opened."""
    fn = getattr(torch.autograd, "_profiler_enabled", None)
    return True if fn is None else fn()
