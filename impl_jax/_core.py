"""Machinery shared by the three rules: working precision, the tree driver, the builders.

Nothing here knows a formula; the formulas live once per rule in ``adagrad.py``,
``adadelta.py`` and ``rmsprop.py`` as *leaf functions*::

    leaf(P, rule, p, g, *moments, lr) -> (delta, *new_moments)

``P`` is the leaf's :class:`Precision`, ``rule`` the ``rules`` dataclass (the
hyperparameters), ``p``/``g``/``moments`` one leaf of the parameter, gradient and state
trees in their storage dtype (``p`` is ``None`` when the caller gave no params and the
rule does not need them), ``lr`` the step-dependent learning rate (a Python float or a
traced scalar). ``delta`` comes back in the working dtype, *unrounded*: the transformation
rounds it to the storage dtype (optax's ``updates``); ``make_step`` adds it to the
parameter in the working dtype and rounds once, which is what torch.optim's fused
``addcdiv_``/``add_(alpha=...)`` do.

Conventions that make JAX round like torch.optim's single-tensor code
---------------------------------------------------------------------
* Working ("opmath") dtype: float32 for bfloat16/float16 storage, the dtype itself for
  float32/float64. torch's CPU kernels compute 16-bit ops in float32 and round to the
  storage dtype once per torch op. Here every leaf is lifted to the working dtype and
  ``P.rnd`` rounds to the storage precision exactly where a torch op ends. Scalars
  (``alpha``, ``1 - alpha``, ``-lr``, ``eps``) are cast to the working dtype (not to
  bf16: ``0.99`` in bf16 is ``0.98828125``), except the two that torch's CPU ``add``
  kernel rounds to bf16 first (``P.stored``: ``add(eps)`` and ``add_(x, alpha=...)``).
  For float32/float64 nothing is lifted and ``P.rnd`` is the identity in value.
* ``P.sqrt`` keeps roots out of XLA's ``a / sqrt(b) -> a * rsqrt(b)`` rewrite (algebraic
  simplifier): XLA:CPU's rsqrt is not correctly rounded (measured: 82 % of f32 results
  correctly rounded, up to 2 ulp; ``g / sqrt(s)`` then matched a correctly rounded
  division in only 60 % of elements). An ``optimization_barrier`` and ``P.rnd`` hide the
  root; the barrier is dropped after the simplifier, so root and division still fuse.
* XLA:CPU contracts ``a * b + c`` into a fused multiply-add, as torch's CPU kernels do
  explicitly (``add_(x, alpha=a)``, ``addcmul_`` and ``lerp_`` are ``vec::fmadd`` there).
  The leaf functions write the product torch fuses as the *left* operand of the ``+``
  (LLVM contracts the left product when both operands are products), and ``P.rnd``
  keeps the results of separate torch ops (``v.mul_(alpha)``) out of the contraction.

Measured against torch 2.13 ``torch.optim`` (``foreach=False``, CPU, AVX-512), 20 steps,
every preset variant: bitwise equal in bfloat16; in float32/float64 bitwise equal once
torch's ``Tensor.sqrt`` is replaced by a correctly rounded one, i.e. the remaining
differences are torch's CPU sqrt, which is off by one ulp in ~17 % of float32 (~1 % of
float64) elements. Exception: Adagrad with ``lr_decay != 0`` in float32 without x64
(``clr`` computed in float32 instead of Python's float64). XLA:GPU was not measured.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._placement import counter_like, filled_like

_REDUCED = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def working_dtype(dtype) -> jnp.dtype:
    """float32 for bfloat16/float16 (torch's opmath type), else ``dtype`` itself."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in _REDUCED else dtype


def unfused(x):
    """``x`` unchanged, but hidden from LLVM's FMA contraction into a following ``+``.

    ``copysign(|x|, x)`` is the identity (NaN, infinities and signed zeros included); on
    XLA:CPU it keeps ``x * a + b`` from becoming ``fma(x, a, b)`` (measured; an
    ``optimization_barrier``, a no-op ``reduce_precision`` or a bitcast round trip do not).
    """
    return jnp.copysign(jnp.abs(x), x)


class Precision:
    """The storage and working dtype of one leaf, and the roundings between them."""

    __slots__ = ("storage", "compute", "reduced")

    def __init__(self, dtype):
        self.storage = jnp.dtype(dtype)
        if not jnp.issubdtype(self.storage, jnp.floating):
            raise TypeError(f"parameters must be real floating point, got dtype {self.storage}")
        self.compute = working_dtype(self.storage)
        self.reduced = self.storage != self.compute

    def up(self, x):
        """``x`` (storage dtype) lifted to the working dtype; exact. ``None`` stays ``None``."""
        return None if x is None else jnp.asarray(x).astype(self.compute)

    def scalar(self, x):
        """A hyperparameter or step scalar in the working dtype (one rounding from float64)."""
        return jnp.asarray(x, dtype=self.compute)

    def stored(self, x):
        """A scalar as torch's CPU ``add`` kernel takes it: rounded to the *storage* dtype.

        Measured (torch 2.13, CPU, bf16): ``t.add(eps)`` and ``t.add_(u, alpha=a)`` round
        ``eps`` and ``a`` to bf16 first, while ``mul_``, ``addcmul_``, ``addcdiv_`` and
        ``lerp_`` keep their scalar in float32 (:meth:`scalar`). Same as ``scalar`` for
        float32/float64.
        """
        if not self.reduced:
            return self.scalar(x)
        return jnp.asarray(x, dtype=self.storage).astype(self.compute)

    def rnd(self, x):
        """End of a torch op: round to the storage precision and keep XLA from fusing across.

        torch materialises every op's result, so ``v.mul_(alpha)`` is rounded before
        ``addcmul_`` adds to it. For float32/float64 nothing needs rounding, but LLVM would
        contract ``v * alpha + q`` into one FMA; ``copysign(|x|, x)`` is the identity and
        hides the product from that contraction (measured on XLA:CPU; a barrier,
        ``reduce_precision`` or a bitcast round trip do not).
        """
        if not self.reduced:
            return unfused(x)
        if self.storage == jnp.dtype(jnp.bfloat16):
            # Same exponent range as float32, so this is exactly a round trip through
            # bf16, and unlike a convert pair no simplifier may drop it as "excess precision".
            return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)
        return x.astype(self.storage).astype(self.compute)

    def div(self, a, b):
        """``rnd(a / b)`` without the identity that hides products: a quotient is never
        contracted into an FMA, and ``unfused`` reads its argument twice (``abs`` and the
        sign), which makes XLA:CPU keep a division out of the consuming fusion (an
        expensive producer whose elements the consumer would read twice) and write the
        quotient to a full-size temporary (measured: Adadelta's ``d / std``, 40 MB at
        1e7 fp32)."""
        q = a / b
        return q if not self.reduced else self.rnd(q)

    def sqrt(self, x):
        """``rnd(sqrt(x))`` that XLA cannot turn into ``rsqrt`` when it ends up a divisor."""
        return jax.lax.optimization_barrier(self.rnd(jnp.sqrt(x)))

    def root(self, x, eps: float, eps_in_sqrt: bool):
        """torch's ``x.add(eps).sqrt_()`` (eps_in_sqrt) or ``x.sqrt().add_(eps)``."""
        if eps_in_sqrt:
            return self.sqrt(self.rnd(x + self.stored(eps)))
        return self.rnd(self.sqrt(x) + self.stored(eps))

    def store(self, x):
        return x.astype(self.storage)


def prepare_grad(P: Precision, rule, p, g):
    """torch's prologue: ``g = -g`` if maximize; ``g = g.add(p, alpha=weight_decay)``
    unless the decay is decoupled (:func:`_decoupled`)."""
    g = P.up(g)
    if rule.maximize:
        g = -g
    if rule.weight_decay != 0 and not rule.decoupled_weight_decay:
        g = P.rnd(P.stored(rule.weight_decay) * P.up(p) + g)
    return g


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """What the generic driver needs to know about one rule."""

    rule_cls: type
    state_cls: type  # NamedTuple: ``step`` first, then the moments (torch.optim's names)
    leaf: Callable  # leaf(P, rule, p, g, *moments, lr) -> (delta, *new_moments)
    fill: Callable[[Any, str], float] = lambda rule, name: 0.0  # initial value of a moment
    # The per-step learning rate from lr (float or schedule value) and the pre-increment count.
    effective_lr: Callable[[Any, Any, Any], Any] = lambda rule, lr, count: lr
    # make_step as single-output passes (see SplitStep), in this order: "params" and moment
    # names. Empty: one jitted module. The order must run every pass that reads an old
    # value before the pass that overwrites it.
    passes: tuple[str, ...] = ()

    @property
    def moment_names(self) -> tuple[str, ...]:
        return self.state_cls._fields[1:]


def scalar_dtype():
    """float64 when x64 is enabled (torch computes step scalars in Python floats), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def init_state(spec: RuleSpec, rule, params) -> NamedTuple:
    """The state before the first step: moments like ``params`` (same dtype and sharding per
    leaf), step 0 (replicated over the parameters' mesh; ``_placement.py``)."""
    for leaf in jax.tree.leaves(params):
        Precision(jnp.result_type(leaf))  # rejects integer and complex leaves
    present = rule.state_names
    moments = {
        name: (
            jax.tree.map(lambda x, v=spec.fill(rule, name): filled_like(x, v), params)
            if name in present
            else None
        )
        for name in spec.moment_names
    }
    return spec.state_cls(step=counter_like(params), **moments)


def _decoupled(P: Precision, rule, p, delta, lr, apply: bool):
    """Decoupled weight decay around the rule's ``delta`` (torch.optim.Adam's
    ``param.mul_(1 - lr * weight_decay)`` before the update; Keras 3's ``_apply_weight_decay``).

    ``apply``: the new parameter ``rnd(p * (1 - lr*wd)) + delta`` (working dtype, the decay
    rounded as torch's separate ``mul_``). Else the optax update ``delta - lr*wd*p``, which
    ``optax.apply_updates`` adds to ``p``. ``lr`` is the step's (Adagrad's ``clr``).
    """
    decay = lr * rule.weight_decay
    if apply:
        return P.rnd(P.up(p) * P.scalar(1 - decay)) + delta
    return delta - P.scalar(decay) * P.up(p)


def _leaves_like(treedef, tree, what: str) -> list:
    """``tree``'s leaves in the order of the gradients' ``treedef``; a clear error if it differs."""
    try:
        return treedef.flatten_up_to(tree)
    except (ValueError, TypeError):
        raise ValueError(
            f"{what} does not have the tree structure of the gradients: gradients {treedef}, "
            f"{what} {jax.tree.structure(tree)}"
        ) from None


def _run(spec: RuleSpec, rule, lr, grads, state, params, apply: bool):
    """One step over the tree: (per-leaf deltas or new params, new state)."""
    if not isinstance(state, spec.state_cls):
        raise TypeError(f"expected a {spec.state_cls.__name__}, got {type(state).__name__}")
    if rule.weight_decay != 0 and params is None:
        raise ValueError(
            f"{rule.name} with weight_decay={rule.weight_decay} needs the parameters: "
            "call update(grads, state, params)"
        )
    count = state.step
    lr_t = lr(count) if callable(lr) else lr
    eff_lr = spec.effective_lr(rule, lr_t, count)

    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(grads)
    paths = [jax.tree_util.keystr(path) or "<root>" for path, _ in paths_and_leaves]
    g_leaves = [leaf for _, leaf in paths_and_leaves]
    p_leaves = _leaves_like(treedef, params, "params") if params is not None else [None] * len(g_leaves)
    present = [name for name in spec.moment_names if getattr(state, name) is not None]
    m_leaves = [_leaves_like(treedef, getattr(state, name), f"state.{name}") for name in present]
    for name, leaves in [("params", p_leaves), *((f"state.{n}", m) for n, m in zip(present, m_leaves))]:
        for path, g, x in zip(paths, g_leaves, leaves):
            if x is not None and jnp.shape(g) != jnp.shape(x):
                raise ValueError(
                    f"gradient {path} has shape {jnp.shape(g)} but {name}{path} has shape {jnp.shape(x)}"
                )

    out_leaves, new_m_leaves = [], [[] for _ in present]
    for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
        ms = dict(zip(present, (m[i] for m in m_leaves)))
        P = Precision(ms[present[0]].dtype)
        delta, *new_ms = spec.leaf(P, rule, p, g, *(ms.get(n) for n in spec.moment_names), eff_lr)
        if rule.decoupled_weight_decay and rule.weight_decay != 0:
            out_leaves.append(P.store(_decoupled(P, rule, p, delta, eff_lr, apply)))
        else:
            out_leaves.append(P.store(P.up(p) + delta) if apply else P.store(delta))
        new_ms = dict(zip(spec.moment_names, new_ms))
        for j, name in enumerate(present):
            new_m_leaves[j].append(new_ms[name])

    new_moments = {name: None for name in spec.moment_names}
    for name, leaves in zip(present, new_m_leaves):
        new_moments[name] = treedef.unflatten(leaves)
    new_state = spec.state_cls(step=optax.safe_increment(count), **new_moments)
    return treedef.unflatten(out_leaves), new_state


def _concrete(name: str, value):
    """A hyperparameter as a Python scalar: 0-d NumPy/JAX arrays are unwrapped, then validated by ``rules``.

    A traced value (``jit``/``vmap``) cannot be validated or branched on, so only ``lr``
    may be one (see :func:`from_keywords`); any other raises a ``TypeError`` naming it.
    """
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} is a traced value; only lr may change inside jit (e.g. through "
            f"optax.inject_hyperparams): pass {name} as a Python number, or list it in "
            f"inject_hyperparams(..., static_args=(...))"
        )
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise TypeError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
        return np.asarray(value).item()
    return value


def from_keywords(spec: RuleSpec, lr, **hyperparameters) -> optax.GradientTransformation:
    """What the factories (``impl_jax.adagrad`` etc.) build from their keywords.

    ``lr`` may be a Python number, a 0-d array, an optax schedule, or a *traced* scalar
    (``optax.inject_hyperparams`` passes ``state.hyperparams['lr']`` in, traced under
    ``jit``); a traced lr cannot be validated and is used as given. Every other
    hyperparameter must be concrete: 0-d arrays are unwrapped to Python scalars and
    validated by the ``rules`` dataclass like numbers (``ValueError`` naming the argument).
    """
    dynamic = None
    if callable(lr):
        dynamic = lr
    elif isinstance(lr, jax.core.Tracer):
        if jnp.ndim(lr) != 0:
            raise TypeError(f"lr must be a scalar, got an array of shape {jnp.shape(lr)}")
        dynamic = lr
    else:
        lr = _concrete("lr", lr)
    values = {name: _concrete(name, value) for name, value in hyperparameters.items()}
    rule = spec.rule_cls(lr=0.0 if dynamic is not None else lr, **values)
    return build_transformation(spec, rule, lr=dynamic)


def build_transformation(spec: RuleSpec, rule, lr=None) -> optax.GradientTransformation:
    """The rule as an optax ``GradientTransformation`` whose updates are the deltas.

    ``lr`` (overriding ``rule.lr``): a number or 0-d array (validated), a schedule, or a
    traced scalar (used as given).
    """
    if not isinstance(rule, spec.rule_cls):
        raise TypeError(f"expected a rules.{spec.rule_cls.__name__}, got {type(rule).__name__}")
    lr = rule.lr if lr is None else lr
    if not callable(lr) and not isinstance(lr, jax.core.Tracer):
        lr = rule.replace(lr=_concrete("lr", lr)).lr  # validated like the rule's own lr

    def init_fn(params):
        return init_state(spec, rule, params)

    def update_fn(updates, state, params=None):
        return _run(spec, rule, lr, updates, state, params, apply=False)

    return optax.GradientTransformation(init_fn, update_fn)


def apply_step(spec: RuleSpec, rule, params, state, grads):
    """``(params, state)`` after one step with ``rule.lr``, each new parameter rounded once
    (``p + delta`` in the working dtype); traceable, not jitted."""
    return _run(spec, rule, rule.lr, grads, state, params, apply=True)


def build_step(spec: RuleSpec, rule):
    """``step(params, state, grads) -> (params, state)``, jitted, params and state donated."""
    if not isinstance(rule, spec.rule_cls):
        raise TypeError(f"expected a rules.{spec.rule_cls.__name__}, got {type(rule).__name__}")

    def step(params, state, grads):
        return apply_step(spec, rule, params, state, grads)

    step.__name__ = f"{rule.name}_step"
    step.__doc__ = f"One {rule!r} step: (params, state, grads) -> (params, state)."
    fused = jax.jit(step, donate_argnums=(0, 1))
    if not spec.passes or rule.weight_decay != 0:
        # Under weight decay every pass reads the old params and the params pass reads
        # every old moment: no order of single-output passes avoids a copy.
        return fused
    return SplitStep(spec, rule, fused)


#: ``SplitStep`` takes its passes from this many elements (all leaves together) up; below,
#: one module's temporary is small and one dispatch costs less than three.
SPLIT_MIN_NUMEL = 1 << 16


class SplitStep:
    """``make_step`` as one jitted pass per output, for a rule whose one-module step makes
    XLA:CPU materialise a full-size temporary.

    Adadelta's ``d = sqrt(u + eps) / sqrt(v + eps) * g`` feeds both the new ``p`` and the
    new ``u``; XLA:CPU does not duplicate a division and a root into two consumers, so the
    one-module step writes ``d`` (or ``d / std``) to a fresh temporary each step (1e7 fp32:
    ``memory_analysis().temp_size_in_bytes`` 40 MB, optax's ``adadelta`` 80 MB) and reads
    it back: 56 bytes per element against the 28 a single pass needs, plus the page faults
    of a fresh 40 MB buffer per call. Here each output is its own executable, computed
    from the old values by the same leaf function (XLA drops what that output does not
    need) and written in place into its donated input: ``p`` (reads p, g, v, u), ``u``
    (g, v, u), ``v`` (g, v): 48 bytes per element, no temporary. Same arithmetic, same
    roundings: bitwise the one-module step.

    Used for concrete arrays of at least ``SPLIT_MIN_NUMEL`` elements; traced arguments
    (inside a user's ``jit``/``vmap``), smaller trees and ``lower`` take the one-module
    step; :meth:`compiled` gives the executables a call runs. ``passes`` names the jitted pass of each output (``"params"``, moment names).
    """

    def __init__(self, spec: RuleSpec, rule, fused):
        self._spec, self._rule, self._fused = spec, rule, fused
        self.__name__, self.__doc__ = fused.__name__, fused.__doc__
        self.passes = {name: self._make_pass(name, last=i == len(spec.passes) - 1)
                       for i, name in enumerate(spec.passes)}

    def _make_pass(self, name: str, last: bool):
        spec, rule = self._spec, self._rule

        def one_output(target, params, state, grads):
            if name == "params":
                params = target
            else:
                state = state._replace(**{name: target})
            # A moment's pass needs no params (no weight decay), so no p + delta either.
            new_params, new_state = _run(spec, rule, rule.lr, grads, state, params, apply=name == "params")
            out = new_params if name == "params" else getattr(new_state, name)
            return (out, new_state.step) if last else out

        one_output.__name__ = f"{rule.name}_step_{name}"
        return jax.jit(one_output, donate_argnums=0)

    def lower(self, *args, **kwargs):
        """The one-module step's ``jax.stages.Lowered`` (``jax.jit(...).lower``); see
        :meth:`compiled` for what a call runs."""
        return self._fused.lower(*args, **kwargs)

    def compiled(self, params, state, grads) -> dict:
        """``{name: jax.stages.Compiled}`` of the executables a call with these arguments
        (arrays or ``jax.ShapeDtypeStruct``) runs: ``{"step": ...}`` for the one-module
        step, else one per pass (``"params"`` and the moment names). The step's temporary
        memory is the sum of their ``memory_analysis().temp_size_in_bytes``."""
        if not self._uses_passes(grads):
            return {"step": self._fused.lower(params, state, grads).compile()}
        out = {}
        for name, fn in self.passes.items():
            if name == "params":
                out[name] = fn.lower(params, None, state, grads).compile()
            else:
                out[name] = fn.lower(getattr(state, name), None, state._replace(**{name: None}), grads).compile()
        return out

    @staticmethod
    def _uses_passes(grads) -> bool:
        leaves = jax.tree.leaves(grads)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return False
        return sum(int(np.prod(np.shape(x))) for x in leaves) >= SPLIT_MIN_NUMEL

    def __call__(self, params, state, grads):
        if not self._uses_passes(grads):
            return self._fused(params, state, grads)
        if not isinstance(state, self._spec.state_cls):
            raise TypeError(f"expected a {self._spec.state_cls.__name__}, got {type(state).__name__}")
        # Each pass reads the old values of what later passes write (the order in
        # spec.passes); a moment already written is passed on as its new value, which no
        # later pass reads (XLA drops it), and params only under weight decay (not here).
        new_params, step = params, None
        for name, fn in self.passes.items():
            if name == "params":
                out = fn(params, None, state, grads)
            else:
                out = fn(getattr(state, name), None, state._replace(**{name: None}), grads)
            if isinstance(out, tuple):
                out, step = out
            if name == "params":
                new_params = out
            else:
                state = state._replace(**{name: out})
        return new_params, state._replace(step=step)
