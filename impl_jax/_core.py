"""Machinery shared by every rule: working precision, the tree driver, the builders.

Nothing here knows a formula; the formulas live once per rule in its own module
(``impl_jax/<rule>.py``) as *leaf functions*::

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

Complex parameters
------------------
``rule.complex_as_real`` (torch.optim's convention, the default): the driver steps the
real view ``(..., 2)`` of a complex leaf, its state included, with the real leaf math.
Otherwise (optax's convention) the leaf math runs on the complex values: ``P.square``
is ``|x|^2`` there, the second moments are real (``rules.reference.state_dtype``) and
scalars stay real. No rounding claim is made for complex leaves beyond the tolerances.

Traced hyperparameters
----------------------
Under ``optax.inject_hyperparams`` inside ``jit`` every numeric hyperparameter arrives
as a traced scalar. The leaf functions read hyperparameters from ``rule``, which is then
the concrete rule with the traced values in place of its fields (:func:`with_values`).
The bools (RMSprop's ``centered``, ``nesterov``, ``bias_correction``...) must be
concrete; whether momentum is on is decided when the state is created (a traced momentum
there allocates the buffer) and read back from the state afterwards.

Measured against torch 2.13 ``torch.optim`` (``foreach=False``, CPU, AVX-512), 20 steps,
every preset variant of Adagrad, Adadelta and RMSprop: bitwise equal in bfloat16; in float32/float64 bitwise equal once
torch's ``Tensor.sqrt`` is replaced by a correctly rounded one, i.e. the remaining
differences are torch's CPU sqrt, which is off by one ulp in ~17 % of float32 (~1 % of
float64) elements. Exception: Adagrad with ``lr_decay != 0`` in float32 without x64
(``clr`` computed in float32 instead of Python's float64). Adam and AdamW: under x64
bitwise a float32 emulation of torch with a correctly rounded sqrt; without x64 ~1.8 % of
float32 elements an ulp apart (``1 - beta2**t`` in float32, torch's in float64). SGD:
within ``rules.tolerance`` (XLA contracts ``p - lr*b`` into an FMA). XLA:GPU was not
measured.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adaptbench.rules import reference

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


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def maybe_nonzero(x) -> bool:
    """Whether a hyperparameter may be nonzero: a traced one may, so its branch is taken."""
    return is_traced(x) or x != 0


class Precision:
    """The storage and working dtype of one leaf, and the roundings between them.

    For a complex leaf (``complex_as_real=False``) ``real`` is the real counterpart: the
    dtype of its scalars and of its real-valued moments.
    """

    __slots__ = ("storage", "compute", "reduced", "complex", "real")

    def __init__(self, dtype):
        self.storage = jnp.dtype(dtype)
        self.complex = jnp.issubdtype(self.storage, jnp.complexfloating)
        if not (self.complex or jnp.issubdtype(self.storage, jnp.floating)):
            raise TypeError(f"parameters must be floating point (real or complex), got dtype {self.storage}")
        self.compute = working_dtype(self.storage)
        self.real = jnp.finfo(self.compute).dtype
        self.reduced = self.storage != self.compute

    def _kind(self, x, dtype):
        """``dtype``, or its real counterpart for a real ``x`` of a complex leaf."""
        return dtype if not self.complex or jnp.iscomplexobj(x) else jnp.finfo(dtype).dtype

    def up(self, x):
        """``x`` (storage dtype) lifted to the working dtype; exact. ``None`` stays ``None``."""
        if x is None:
            return None
        x = jnp.asarray(x)
        return x.astype(self._kind(x, self.compute))

    def scalar(self, x):
        """A hyperparameter or step scalar in the working dtype (one rounding from float64)."""
        return jnp.asarray(x, dtype=self.real)

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
        ``reduce_precision`` or a bitcast round trip do not). Complex values pass unchanged.
        """
        if jnp.iscomplexobj(x):
            return x
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

    def square(self, x, scale=None):
        """``(scale * x) * x`` (torch's ``addcmul_(x, x, value=scale)``), or ``x * x``;
        for a complex ``x`` the real ``|x|^2`` the same way, ``(scale * x) * conj(x)``."""
        left = x if scale is None else scale * x
        if jnp.iscomplexobj(x):
            return (left * jnp.conj(x)).real
        return left * x

    def sqrt(self, x):
        """``rnd(sqrt(x))`` that XLA cannot turn into ``rsqrt`` when it ends up a divisor."""
        return jax.lax.optimization_barrier(self.rnd(jnp.sqrt(x)))

    def root(self, x, eps: float, eps_in_sqrt: bool):
        """torch's ``x.add(eps).sqrt_()`` (eps_in_sqrt) or ``x.sqrt().add_(eps)``."""
        if eps_in_sqrt:
            return self.sqrt(self.rnd(x + self.stored(eps)))
        return self.rnd(self.sqrt(x) + self.stored(eps))

    def store(self, x):
        """``x`` rounded to the storage dtype (its real counterpart for a real ``x`` of a complex leaf)."""
        return x.astype(self._kind(x, self.storage))


def lerp(P: Precision, start, end, weight):
    """torch's ``start.lerp_(end, weight)`` (ATen/native/Lerp.h: an FMA from the nearer end)."""
    from_start = lambda: P.scalar(weight) * (end - start) + start
    from_end = lambda: (P.scalar(weight) - P.scalar(1.0)) * (end - start) + end
    if is_traced(weight):
        return jnp.where(jnp.abs(weight) < 0.5, from_start(), from_end())
    return from_start() if abs(weight) < 0.5 else from_end()


@jax.jit
def one_minus_pow(decay, t):
    """``1 - decay**t``, a bias correction, jitted."""
    # Jitted like optax.tree.bias_correction: XLA's compiled pow differs from the eager
    # one (measured: 1 - 0.999**3 in float32 is 0.00299698 compiled, 0.00299692 eager,
    # and the quotient by it amplifies that to 1e-5 of the step).
    return 1 - decay**t


def prepare_grad(P: Precision, rule, p, g):
    """torch's prologue: ``g = -g`` if maximize; ``g = g.add(p, alpha=weight_decay)``
    unless the decay is decoupled (:func:`_decoupled`)."""
    g = P.up(g)
    if rule.maximize:
        g = -g
    if maybe_nonzero(rule.weight_decay) and not rule.decoupled_weight_decay:
        g = P.rnd(P.stored(rule.weight_decay) * P.up(p) + g)
    return g


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """What the generic driver needs to know about one rule."""

    rule_cls: type
    state_cls: type  # NamedTuple: ``step`` first, then the moments (torch.optim's names)
    leaf: Callable  # leaf(P, rule, p, g, *moments, **scalars) -> (delta, *new_moments)
    # The leaf's per-step keyword scalars from the rule, lr (float, schedule value or traced)
    # and the pre-increment count.
    scalars: Callable[[Any, Any, Any], dict] = lambda rule, lr, count: {"lr": lr}
    # Which of those scalars is the step's learning rate (decoupled weight decay uses it).
    lr_scalar: str = "lr"
    # Numeric hyperparameters whose value switches a moment on (> 0), with that moment.
    switches: tuple[tuple[str, str], ...] = ()
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


def _dtype(x) -> jnp.dtype:
    """``x``'s dtype as JAX will use it (float64 is float32 unless x64 is enabled)."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.result_type(x)))


def _check_floating(x, where: str) -> jnp.dtype:
    dtype = _dtype(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{where} has dtype {dtype}; parameters and gradients must be floating point (real or complex)")
    return dtype


def init_state(spec: RuleSpec, rule, params) -> NamedTuple:
    """The state before the first step: ``step`` 0 (replicated over the parameters' mesh;
    ``_placement.py``) and each moment a tree like ``params``, sharded like it.

    Each moment leaf has its parameter's dtype (``rules.reference.state_dtype``: the real
    counterpart for the second moments of a complex parameter under
    ``complex_as_real=False``) and starts at ``rule.initial_value`` in every real
    element. ``TypeError`` naming the leaf for integer (or other non-floating) leaves.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        _check_floating(leaf, f"params{jax.tree_util.keystr(path)}")

    def filled(name, x):
        dtype = reference.state_dtype(rule, name, _dtype(x))
        value = rule.initial_value(name)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            value = value * (1 + 1j)  # every real element, as torch.optim fills complex state
        return filled_like(x, value, dtype)

    moments = {
        name: jax.tree.map(lambda x, n=name: filled(n, x), params) if name in rule.state_names else None
        for name in spec.moment_names
    }
    return spec.state_cls(step=counter_like(params), **moments)


def _decoupled(P: Precision, rule, p, delta, lr, apply: bool):
    """Decoupled weight decay around the rule's ``delta`` (torch.optim.Adam's
    ``param.mul_(1 - lr * weight_decay)`` before the update; Keras 3's ``_apply_weight_decay``).

    ``apply``: the new parameter ``rnd(p * (1 - lr*wd)) + delta`` (working dtype, the decay
    rounded as torch's separate ``mul_``). Else the optax update ``new - p``, with ``new``
    that parameter rounded to the storage precision: whenever ``new`` is within a factor
    2 of ``p`` (a step that does not cross or approach zero) the difference is exact and
    ``optax.apply_updates`` lands on ``new`` bit for bit. The one-rounding update
    ``delta - lr*wd*p`` differed from torch by an ulp of ``p`` every step, which AdamW
    accumulates: 10x the float32 loss-curve difference of the other rules over 500 steps
    (tests/test_training_parity.py). ``lr`` is the step's (Adagrad's ``clr``).
    """
    decay = lr * rule.weight_decay
    new = P.rnd(P.up(p) * P.scalar(1 - decay)) + delta
    if apply:
        return new
    return P.rnd(new) - P.up(p)


def _leaves_like(treedef, tree, what: str) -> list:
    """``tree``'s leaves in the order of the gradients' ``treedef``; a clear error if it differs."""
    try:
        return treedef.flatten_up_to(tree)
    except (ValueError, TypeError):
        raise ValueError(
            f"{what} does not have the tree structure of the gradients: gradients {treedef}, "
            f"{what} {jax.tree.structure(tree)}"
        ) from None


def _check_leaves(rule, paths, g_leaves, p_leaves, present, m_leaves) -> None:
    """Shapes and dtypes of every gradient, parameter and state leaf against each other.

    A gradient must have its parameter's shape and dtype exactly (no promotion: a complex
    gradient of a real parameter, or a float16 one of a float32 parameter, is a
    ``TypeError``); each state leaf the shape of its gradient and the dtype
    ``rules.reference.state_dtype`` gives for the gradient's dtype.
    """
    for i, (path, g) in enumerate(zip(paths, g_leaves)):
        g_dtype = _check_floating(g, f"gradient {path}")
        p = p_leaves[i]
        if p is not None:
            if jnp.shape(g) != jnp.shape(p):
                raise ValueError(f"gradient {path} has shape {jnp.shape(g)} but params{path} has shape {jnp.shape(p)}")
            if _dtype(p) != g_dtype:
                raise TypeError(
                    f"gradient {path} has dtype {g_dtype} but params{path} has dtype {_dtype(p)}; "
                    f"gradients must have their parameter's dtype (cast them, e.g. "
                    f"jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params))"
                )
        for name, leaves in zip(present, m_leaves):
            x = leaves[i]
            if jnp.shape(g) != jnp.shape(x):
                raise ValueError(f"gradient {path} has shape {jnp.shape(g)} but state.{name}{path} has shape {jnp.shape(x)}")
            want = reference.state_dtype(rule, name, g_dtype)
            if _dtype(x) != want:
                raise TypeError(
                    f"state.{name}{path} has dtype {_dtype(x)} but a gradient of dtype {g_dtype} "
                    f"needs {jnp.dtype(want)}; create the state with init(params) for these parameters"
                )


def _real_view(x):
    """A complex array as its real ``(..., 2)`` view of (real, imaginary) pairs."""
    return None if x is None else jnp.stack([x.real, x.imag], axis=-1)


def _complex_view(x):
    return None if x is None else jax.lax.complex(x[..., 0], x[..., 1])


def _leaf_step(spec: RuleSpec, rule, p, g, moments: dict, scalars: dict, apply: bool):
    """One leaf: (delta or new param, {moment: new value}); complex leaves per ``complex_as_real``."""
    if jnp.iscomplexobj(g) and rule.complex_as_real:
        views = {name: _real_view(m) for name, m in moments.items()}
        out, new = _leaf_step(spec, rule, _real_view(p), _real_view(g), views, scalars, apply)
        return _complex_view(out), {name: _complex_view(m) for name, m in new.items()}
    P = Precision(_dtype(g))
    delta, *new_ms = spec.leaf(P, rule, p, g, *(moments.get(n) for n in spec.moment_names), **scalars)
    if rule.decoupled_weight_decay and maybe_nonzero(rule.weight_decay):
        out = P.store(_decoupled(P, rule, p, delta, scalars[spec.lr_scalar], apply))
    else:
        out = P.store(P.up(p) + delta) if apply else P.store(delta)
    return out, dict(zip(spec.moment_names, new_ms))


def _run(spec: RuleSpec, rule, lr, grads, state, params, apply: bool, traced: dict):
    """One step over the tree: (per-leaf deltas or new params, new state).

    ``traced``: hyperparameters given as traced scalars, used in place of ``rule``'s fields.
    """
    if not isinstance(state, spec.state_cls):
        raise TypeError(f"expected a {spec.state_cls.__name__}, got {type(state).__name__}")
    for name, moment in spec.switches:
        if name in traced:  # on or off as when the state was created
            rule = rule.replace(**{name: 1.0 if getattr(state, moment) is not None else 0.0})
    math_rule = with_values(rule, traced)
    if maybe_nonzero(math_rule.weight_decay) and params is None:
        raise ValueError(
            f"{rule.name} with weight_decay={math_rule.weight_decay} needs the parameters: "
            "call update(grads, state, params)"
        )
    count = state.step
    lr_t = lr(count) if callable(lr) else lr
    scalars = spec.scalars(math_rule, lr_t, count)

    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(grads)
    paths = [jax.tree_util.keystr(path) or "<root>" for path, _ in paths_and_leaves]
    g_leaves = [leaf for _, leaf in paths_and_leaves]
    p_leaves = _leaves_like(treedef, params, "params") if params is not None else [None] * len(g_leaves)
    present = [name for name in spec.moment_names if getattr(state, name) is not None]
    if tuple(present) != rule.state_names:
        raise ValueError(
            f"the state holds {present} but {rule!r} needs {list(rule.state_names)}; "
            "create the state with init() of the same rule"
        )
    m_leaves = [_leaves_like(treedef, getattr(state, name), f"state.{name}") for name in present]
    _check_leaves(rule, paths, g_leaves, p_leaves, present, m_leaves)

    out_leaves, new_m_leaves = [], [[] for _ in present]
    for i, (p, g) in enumerate(zip(p_leaves, g_leaves)):
        moments = {name: m[i] for name, m in zip(present, m_leaves)}
        out, new_ms = _leaf_step(spec, math_rule, p, g, moments, scalars, apply)
        out_leaves.append(out)
        for j, name in enumerate(present):
            new_m_leaves[j].append(new_ms[name])

    new_moments = {name: None for name in spec.moment_names}
    for name, leaves in zip(present, new_m_leaves):
        new_moments[name] = treedef.unflatten(leaves)
    new_state = spec.state_cls(step=optax.safe_increment(count), **new_moments)
    return treedef.unflatten(out_leaves), new_state


def with_values(rule, traced: dict):
    """``rule`` with some numeric fields set to traced scalars, unvalidated (they cannot be).

    The leaf functions read hyperparameters as ``rule.<field>``; this is how a value
    injected with ``optax.inject_hyperparams`` reaches them inside ``jit``.
    """
    if not traced:
        return rule
    copy = dataclasses.replace(rule)
    for name, value in traced.items():
        object.__setattr__(copy, name, value)
    return copy


def _concrete(name: str, value):
    """A concrete hyperparameter as a Python scalar: 0-d NumPy/JAX arrays are unwrapped
    (a complex one with a zero imaginary part, as ``inject_hyperparams`` makes for complex
    parameters, to its real part), then validated by ``rules``."""
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if np.ndim(value) != 0:
            raise TypeError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
        value = np.asarray(value).item()
        if isinstance(value, complex):
            if value.imag != 0:
                raise ValueError(f"{name} must be real, got {value!r}")
            value = value.real
    return value


def _is_switch_field(cls, name: str) -> bool:
    field = {f.name: f for f in dataclasses.fields(cls)}.get(name)
    return field is not None and isinstance(field.default, bool)


#: Every rule impl_jax has math for, by name (``register``; ``impl_jax/<rule>.py`` each
#: register theirs, a user's rule through ``impl_jax.register_rule``).
SPECS: dict[str, RuleSpec] = {}
#: Each registered rule's factory (:func:`make_factory`), by name.
FACTORIES: dict[str, Callable] = {}


def register(spec: RuleSpec, *, replace: bool = False) -> Callable:
    """Add ``spec`` to :data:`SPECS` and return the rule's factory (:func:`make_factory`).
    ``ValueError`` when a rule of that name has one already (unless ``replace``)."""
    name = spec.rule_cls.name
    if name in SPECS and not replace:
        raise ValueError(f"impl_jax already has the {name!r} rule (pass replace=True)")
    SPECS[name] = spec
    FACTORIES[name] = make_factory(spec)
    return FACTORIES[name]


def make_factory(spec: RuleSpec) -> Callable:
    """The rule's factory with torch.optim's keywords and defaults: the rule's fields that
    torch.optim takes positionally (``TORCH_POSITIONAL``), in its order, then every other
    field keyword-only, each defaulting to the dataclass's (torch.optim's) value. Calls
    :func:`from_keywords`; ``inspect.signature`` shows the keywords, so
    ``optax.inject_hyperparams`` finds them."""
    cls = spec.rule_cls
    fields = {f.name: f for f in dataclasses.fields(cls)}
    packed = {f for parts in cls.TORCH_TUPLES.values() for f in parts}
    positional = [n for n in cls.TORCH_POSITIONAL if n in fields or n in cls.TORCH_TUPLES]
    P = inspect.Parameter

    def default(name):
        if name in cls.TORCH_TUPLES:
            return tuple(fields[f].default for f in cls.TORCH_TUPLES[name])
        if name in packed:  # the other spelling of a tuple's entry (betas[0] is beta1)
            return None
        value = fields[name].default
        return 0 if type(value) is float and value == 0.0 else value  # as torch.optim writes it

    signature = inspect.Signature(
        [P(n, P.POSITIONAL_OR_KEYWORD, default=default(n)) for n in positional]
        + [P(n, P.KEYWORD_ONLY, default=default(n)) for n in fields if n not in positional],
        return_annotation="optax.GradientTransformationExtraArgs",
    )

    def factory(*args, **kwargs) -> optax.GradientTransformationExtraArgs:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{cls.name}(): {exc}") from None
        bound.apply_defaults()
        values = cls.unpack_keywords(bound.arguments)
        return from_keywords(spec, values.pop("lr"), **values)

    factory.__signature__ = signature
    factory.__name__ = factory.__qualname__ = cls.name
    factory.__module__ = "impl_jax"
    factory.__doc__ = (
        f"{cls.__name__} as an optax ``GradientTransformation`` whose updates are the deltas "
        f"to add (``optax.apply_updates``); keywords and defaults of torch.optim "
        f"(``rules.{cls.__name__}``, whose docstring gives the formula).\n\n"
        f"``lr`` may be an optax schedule, evaluated at the step count before the increment "
        f"(``optax.scale_by_schedule``). ``weight_decay != 0`` needs ``update(grads, state, "
        f"params)``. Invalid values raise ``ValueError``/``TypeError`` naming the argument. "
        f"``optax.inject_hyperparams({cls.name})(...)`` works inside ``jit`` with every numeric "
        f"hyperparameter injected (traced values are used unvalidated); the bools are static "
        f"(``from_keywords``). ``{cls.name}(**rules.preset({cls.name!r}, \"optax\").as_dict())`` "
        f"is the optax convention."
        + (f" {', '.join(cls.TORCH_TUPLES)} (torch.optim's spelling) or its entries "
           f"{', '.join(sorted(packed))} (injectable one by one) may be given, not both."
           if cls.TORCH_TUPLES else "")
    )
    return factory


def state_class(rule_cls) -> type:
    """A ``NamedTuple`` state for a rule without one of its own: ``step`` then each name of
    ``rule_cls.STATE`` (absent moments ``None``), named ``<Rule>State``."""
    names = [("step", Any)] + [(n, Any) for n in rule_cls.STATE]
    cls = NamedTuple(f"{rule_cls.__name__}State", names)
    cls.__new__.__defaults__ = (None,) * len(rule_cls.STATE)
    cls.__module__ = "impl_jax"
    return cls


def from_keywords(spec: RuleSpec, lr, **hyperparameters) -> optax.GradientTransformationExtraArgs:
    """What the factories (``impl_jax.adagrad`` etc.) build from their keywords.

    ``lr`` may be a Python number, a 0-d array or an optax schedule. Concrete values
    (numbers, 0-d arrays, unwrapped) are validated by the ``rules`` dataclass
    (``ValueError``/``TypeError`` naming the argument). Every *numeric* hyperparameter may
    also be a traced scalar (``optax.inject_hyperparams`` passes ``state.hyperparams``
    in, traced under ``jit``): it is used as given, unvalidated. The switches (bools:
    ``centered``, ``nesterov``, ...) change what is computed and must be concrete: a traced
    one is a ``TypeError`` naming it. A numeric hyperparameter that switches a moment on
    (RMSprop's ``momentum > 0``) decides the state's layout when the state is created: a
    concrete value there decides it, a traced one allocates the moment (its value is not
    known; a zero momentum then steps as no momentum, up to rounding); afterwards the
    state's layout decides.
    """
    dynamic_lr = None
    if callable(lr):
        dynamic_lr = lr
    elif is_traced(lr):
        if jnp.ndim(lr) != 0:
            raise TypeError(f"lr must be a scalar, got an array of shape {jnp.shape(lr)}")
        dynamic_lr = jnp.real(lr)
    else:
        lr = _concrete("lr", lr)
    traced, values = {}, {}
    for name, value in hyperparameters.items():
        if not is_traced(value):
            values[name] = _concrete(name, value)
        elif _is_switch_field(spec.rule_cls, name):
            raise TypeError(
                f"{name} is a traced value; it switches part of the computation on or off and "
                f"must be a Python bool (list it in inject_hyperparams(..., static_args=(...)))"
            )
        elif jnp.ndim(value) != 0:
            raise TypeError(f"{name} must be a scalar, got an array of shape {jnp.shape(value)}")
        else:
            traced[name] = jnp.real(value)
    placeholders = {f.name: f.default for f in dataclasses.fields(spec.rule_cls) if f.name in traced}
    rule = spec.rule_cls(lr=0.0 if dynamic_lr is not None else lr, **placeholders, **values)
    return build_transformation(spec, rule, lr=dynamic_lr, traced=traced)


def build_transformation(spec: RuleSpec, rule, lr=None, traced=None) -> optax.GradientTransformationExtraArgs:
    """The rule as an optax ``GradientTransformationExtraArgs`` whose updates are the deltas.

    ``lr`` (overriding ``rule.lr``): a number or 0-d array (validated), a schedule, or a
    traced scalar (used as given). ``traced``: other hyperparameters as traced scalars
    (see :func:`from_keywords`). Extra keyword arguments of ``update`` (``value=loss``...)
    are accepted and ignored, as every optax alias does.
    """
    if not isinstance(rule, spec.rule_cls):
        raise TypeError(f"expected a rules.{spec.rule_cls.__name__}, got {type(rule).__name__}")
    traced = dict(traced or {})
    lr = rule.lr if lr is None else lr
    if not callable(lr) and not is_traced(lr):
        lr = rule.replace(lr=_concrete("lr", lr)).lr  # validated like the rule's own lr

    def init_fn(params):
        # A switch traced when the state is created (jax.jit(tx.init) under
        # inject_hyperparams) may be nonzero: its moment is allocated.
        on = {name: 1.0 for name, _ in spec.switches if name in traced}
        fills = {name: value for name, value in traced.items() if name not in on}
        return init_state(spec, with_values(rule.replace(**on), fills), params)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args  # e.g. value=loss for optax's line searches; the rules do not use them
        return _run(spec, rule, lr, updates, state, params, apply=False, traced=traced)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def apply_step(spec: RuleSpec, rule, params, state, grads):
    """``(params, state)`` after one step with ``rule.lr``, each new parameter rounded once
    (``p + delta`` in the working dtype); traceable, not jitted."""
    return _run(spec, rule, rule.lr, grads, state, params, apply=True, traced={})


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
            new_params, new_state = _run(spec, rule, rule.lr, grads, state, params, apply=name == "params", traced={})
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
