"""The wrapper around ``step`` that runs the step hooks and marks the profiler range.

``torch.optim.Optimizer`` wraps every subclass's ``step`` (``profile_hook_step``, installed
by ``_patch_step_function``) so that it

1. opens a profiler range named ``Optimizer.step#<class name>.step``
   (``torch.autograd.profiler.record_function``),
2. calls the global step pre-hooks (``torch.optim.optimizer.register_optimizer_step_pre_hook``),
   then the optimizer's own (``register_step_pre_hook``); a hook may return new
   ``(args, kwargs)``,
3. calls ``step``, then ``_optimizer_step_code`` (where ``torch.profiler``'s Python tracer
   inspects the optimizer),
4. calls the optimizer's own post-hooks, then the global ones.

Opening the range costs about 8 us even when no profiler is recording (2-core CPU;
torch.optim pays it at every step, a tenth of a small model's step). :func:`hooked_step`
does the same four things but opens the range only while a profiler is recording
(``torch.autograd._profiler_enabled()``, true under ``torch.profiler.profile`` and
``torch.autograd.profiler.profile``) or while ``torch.compile`` traces the step (where the
range costs nothing at run time). A ``RecordFunction`` observer that is not a profiler
(``torch.profiler.ExecutionTraceObserver`` alone) does not see the range.
"""

from __future__ import annotations

import functools
from itertools import chain

import torch

from .torch_private import profiler_enabled, step_hook_dicts

# torch.optim's registration functions add to these very dicts.
_GLOBAL_PRE, _GLOBAL_POST = step_hook_dicts()

__all__ = ["hooked_step"]


def hooked_step(func):
    """``func`` (an optimizer class's ``step``) wrapped as described in the module
    docstring; ``RuntimeError`` when a pre-hook returns something other than None or an
    ``(args, kwargs)`` pair (torch.optim's rule)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        self = args[0]
        if torch.compiler.is_dynamo_compiling() or profiler_enabled():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return _run_with_hooks(func, self, args, kwargs)
        if _GLOBAL_PRE or _GLOBAL_POST or self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks:
            return _run_with_hooks(func, self, args, kwargs)
        # No hook and no profiler (the usual step): one frame less under the user's call.
        out = func(*args, **kwargs)
        self._optimizer_step_code()
        return out

    return wrapper


def _run_with_hooks(func, self, args, kwargs):
    pre = self._optimizer_step_pre_hooks
    if _GLOBAL_PRE or pre:
        for hook in chain(_GLOBAL_PRE.values(), pre.values()):
            result = hook(self, args, kwargs)
            if result is None:
                continue
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(
                    f"{func} must return None or a tuple of (new_args, new_kwargs), but got {result}."
                )
            args, kwargs = result
    out = func(*args, **kwargs)
    self._optimizer_step_code()
    post = self._optimizer_step_post_hooks
    if post or _GLOBAL_POST:
        for hook in chain(post.values(), _GLOBAL_POST.values()):
            hook(self, args, kwargs)
    return out
