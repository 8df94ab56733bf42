"""A jitted whole-tree step with buffer donation: the fast path for benchmarks and training."""

from __future__ import annotations

from . import _core
from .transform import spec_for


def make_step(rule):
    """``step(params, state, grads) -> (params, state)`` for ``rule``, jitted.

    ``params`` and ``state`` are donated (``donate_argnums=(0, 1)``): their buffers are
    reused for the outputs and must not be used after the call; thread the returned ones.
    Any pytree of floating arrays works; ``state`` comes from ``impl_jax.init(rule, params)``.

    The new parameter is computed from the same leaf math as the transformation,
    ``p + delta`` in the working dtype and rounded once, as torch's fused
    ``p.addcdiv_(g, std, value=-clr)`` / ``p.add_(b, alpha=-lr)`` do. For float32/float64
    this is bitwise ``optax.apply_updates(params, updates)``; for bfloat16/float16 the
    transformation rounds the delta first, so the two may differ by one rounding.

    Adadelta without weight decay, from ``_core.SPLIT_MIN_NUMEL`` elements up, returns a
    ``_core.SplitStep``: the same step as one jitted pass per output (params, then each
    moment), so that XLA:CPU writes no full-size temporary (``compiled(params, state, grads)`` gives
    the executables a call runs, for ``memory_analysis()``); bitwise the one-module step, which ``lower``
    and traced calls (inside a user's ``jit``/``vmap``) use.

    The learning rate is ``rule.lr``, a float (no schedule here: use
    ``transformation(rule, lr=schedule)``, or build a new step per lr).
    """
    return _core.build_step(spec_for(rule), rule)
