"""Everything impl_torch keeps for the life of the process, owned here, in one place.

Each cache below is made here, empty, when ``impl_torch`` is imported, and lives until the
process ends; the modules that fill and read them hold references to these very objects.
:func:`clear` empties all of them (tests; a program that wants its compiled kernels freed):
the next step then probes, resolves and compiles again. What belongs to one optimizer (its
groups' plans, ``plan.GroupPlan``) lives in that optimizer and dies with it; the registries
of rules and impls (``updates``, ``functional.register_impl``) are configuration, not
caches, and :func:`clear` leaves them.

=================  =======================================================  ==============
cache              holds                                                    bounded by
=================  =======================================================  ==============
``COMPILED``       fused kernels (``fused.py``) by key: rule structure,     the
                   dtype, device, step dtype, thread count, shape class     configurations
                                                                            stepped
``FAILED``         kernels whose compile failed at step time, with the      the same
                   error: never compiled again (``"auto"`` stays eager)
``HYPERS``         0-dim CPU tensors of hyperparameter values, the fused    256 (cleared
                   kernels' inputs, by (field, value, dtype)                when full)
``RESOLVED``       an optimizer group's (rule, impl) by its values, for     512 (cleared
                   steps traced by a user's ``torch.compile``               when full)
``WARNED``         reasons already logged at WARNING (each said once)       the reasons
``PROBE``          whether Inductor can compile here (one compiler run)     one answer
``COMPILES``       graphs compiled so far (the compile log, its tests)      a counter
``STAND_IN``       open ``testing.stand_in_device()`` blocks                a counter
memoized functions ``fused._key`` (compile keys per rule),                  1024, 512,
                   ``optimizer._resolve_cached`` (validated configs),       one
                   ``torch_private.direct_calls`` (this torch's answer)
=================  =======================================================  ==============
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor

__all__ = ["COMPILED", "FAILED", "HYPERS", "RESOLVED", "WARNED", "PROBE", "COMPILES", "STAND_IN",
           "memoized", "clear", "compiles"]

COMPILED: dict = {}
FAILED: dict = {}
HYPERS: dict[tuple, Tensor] = {}
HYPERS_MAX = 256
RESOLVED: dict = {}
RESOLVED_MAX = 512
WARNED: set[str] = set()
PROBE: list = []
COMPILES = [0]
STAND_IN = [0]

_MEMOIZED: list = []


def memoized(maxsize: int | None) -> Callable:
    """``functools.lru_cache(maxsize)``, the cache registered here so that :func:`clear`
    empties it too."""

    def wrap(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        _MEMOIZED.append(cached)
        return cached

    return wrap


def compiles() -> int:
    """Graphs compiled by the fused impl in this process so far."""
    return COMPILES[0]


def clear() -> None:
    """Empty every cache (in place: the modules' references stay valid). Counters and open
    stand-in blocks are kept: they count, they do not cache."""
    for cache in (COMPILED, FAILED, HYPERS, RESOLVED, WARNED):
        cache.clear()
    PROBE.clear()
    for fn in _MEMOIZED:
        fn.cache_clear()
