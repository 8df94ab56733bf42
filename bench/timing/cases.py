"""The sweep: which rules, sizes, dtypes, devices and implementations are timed.

Imports neither torch nor jax at module level (``impl_torch`` is imported only to read
``impl_torch.IMPLS``); the builders live in ``bench/timing/torch_cases.py``,
``jax_cases.py`` and ``keras_cases.py``.

Three sweeps (``ADAPTBENCH_SWEEP``, set by ``python -m bench run``):

- ``quick`` (``make bench``, ``run --quick``): fp32, every rule at ``QUICK_SIZES`` with the
  implementations a user chooses between (``QUICK_IMPLS``: our default and fused steps,
  torch.optim's three variants, our two JAX forms and optax); no Keras peers, no floor, no
  call-overhead processes, no sharded or training benchmarks. It answers "which
  implementation at my size" at both thread settings in minutes.
- ``default`` (``run``): fp32; CPU (and CUDA when present); every rule, size and
  implementation; the committed ``results/<machine>/``.
- ``full`` (``run --all-dtypes``): the default plus bf16 and fp64, with jax's
  x64 mode on for the whole session.

Every implementation computes the same update class with the ``torch`` convention's
hyperparameters and the rule's typical overrides (``rules.preset(rule, "torch",
**Rule.TYPICAL)``: SGD with momentum 0.9). Every registered rule is swept
(``rules.RULES``, a user's own with ``--rules-module``); each peer gets the keywords the
rule's ``PEERS`` give it (``bench/peers.py``), and a peer without a setting for the rule has
no rows.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from functools import cached_property

import numpy as np

from bench.peers import has_peer

CONVENTION = "torch"
DEVICES = ("cpu", "cuda")
ITEMSIZE = {"fp32": 4, "bf16": 2, "fp64": 8}
PROBE_ACCESSES = 3  # a += b: read a, read b, write a
SEED = 20240611


# Every implementation label, in the order of the report's tables and plots: ours (torch,
# then JAX), the peers (torch.optim, optax, Keras), the floor.
IMPL_ORDER = ("ours-torch-loop", "ours-torch-foreach", "ours-torch-fused", "ours-torch-auto", "ours-jax-step",
              "ours-jax-optax", "torch.optim-loop", "torch.optim-foreach", "torch.optim-fused", "optax",
              "keras-jax", "keras-torch", "jax-empty-jit")
SWEEPS = ("quick", "default", "full")
# A tiny model, a realistic many-tensor one and one large tensor: six rules at three sizes
# keep make bench within ~10 minutes on 2 cores (five sizes at three rules did)
QUICK_SIZES = ("iris15", "tfm100", "1e7")
QUICK_IMPLS = ("ours-torch-fused", "ours-torch-auto", "ours-jax-step", "ours-jax-optax",
               "torch.optim-loop", "torch.optim-foreach", "torch.optim-fused", "optax")


def sweep() -> str:
    """``ADAPTBENCH_SWEEP`` (unset: ``default``; ``ADAPTBENCH_FULL=1``, the older switch, means ``full``)."""
    raw = os.environ.get("ADAPTBENCH_SWEEP", "").strip().lower()
    if not raw:
        return "full" if os.environ.get("ADAPTBENCH_FULL", "").strip().lower() not in ("", "0", "false", "no") \
            else "default"
    if raw not in SWEEPS:
        raise ValueError(f"ADAPTBENCH_SWEEP must be one of {SWEEPS}, got {raw!r}")
    return raw


def full_sweep() -> bool:
    return sweep() == "full"


def quick_sweep() -> bool:
    return sweep() == "quick"


# The modules of a user's rules (``--rules-module``, comma-separated): bench/conftest.py
# sets it, so that the processes a benchmark starts (Keras, call overhead, sharded
# servers) register the same rules as the pytest process.
RULES_MODULES = "ADAPTBENCH_RULES_MODULES"


def rule_names() -> tuple[str, ...]:
    """The registered rules, in the registry's order, after importing ``RULES_MODULES``."""
    from adaptbench import rules

    for name in filter(None, os.environ.get(RULES_MODULES, "").split(",")):
        importlib.import_module(name)
    return tuple(rules.RULES)


def sizes() -> tuple["Size", ...]:
    return tuple(s for s in SIZES if s.id in QUICK_SIZES) if quick_sweep() else SIZES


def dtypes() -> tuple[str, ...]:
    return tuple(ITEMSIZE) if full_sweep() else ("fp32",)


def _transformer_shapes(d: int = 96, blocks: int = 8, vocab: int = 1024, ctx: int = 64) -> tuple:
    """100 tensors, 999,360 elements: token and position embeddings, 8 pre-LN GPT blocks, final LN."""
    shapes = [(vocab, d), (ctx, d)]
    for _ in range(blocks):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,)]  # ln1, qkv, attention out
        shapes += [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # ln2, mlp in, mlp out
    shapes += [(d,), (d,)]
    return tuple(shapes)


@dataclasses.dataclass(frozen=True)
class Size:
    id: str
    shapes: tuple
    note: str

    @property
    def n(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def n_tensors(self) -> int:
        return len(self.shapes)


SIZES = (
    Size("iris15", ((4, 3), (3,)), "the tutorial's Iris softmax regression: W [4,3] + b [3]"),
    Size("1e3", ((1_000,),), "one tensor"),
    Size("1e5", ((100_000,),), "one tensor"),
    Size("1e6", ((1_000_000,),), "one tensor"),
    Size("tfm100", _transformer_shapes(), "100 tensors, ~1e6 elements, shaped like an 8-block GPT (d=96)"),
    Size("1e7", ((10_000_000,),), "one tensor"),
)
SIZE_BY_ID = {s.id: s for s in SIZES}


@dataclasses.dataclass(frozen=True)
class Impl:
    id: str
    framework: str  # "torch" | "jax"
    family: str  # "ours" | "peer" | "floor" (a lower bound, not an optimizer)
    variant: str
    description: str
    peer: str | None = None  # the library in a rule's PEERS ("torch", "optax", "keras")


def torch_impl_names() -> tuple[str, ...]:
    """``impl_torch.IMPLS`` (loop, foreach, fused once it exists); the contract's two if absent."""
    try:
        import impl_torch
    except ModuleNotFoundError as exc:
        if exc.name != "impl_torch":
            raise
        return ("loop", "foreach")
    return tuple(impl_torch.IMPLS)


def impls() -> tuple[Impl, ...]:
    ours = [
        Impl(f"ours-torch-{name}", "torch", "ours", name, f"impl_torch.optimizer_for(rule, params, impl={name!r}).step()")
        for name in torch_impl_names()
    ]
    ours += [
        Impl("ours-jax-step", "jax", "ours", "make_step", "impl_jax.make_step(rule): jitted, params and state donated"),
        Impl(
            "ours-jax-optax",
            "jax",
            "ours",
            "transformation",
            "impl_jax.transformation(rule).update + optax.apply_updates, jitted, params and state donated",
        ),
    ]
    peers = [
        Impl("torch.optim-loop", "torch", "peer", "foreach=False", "torch.optim.<Rule>(foreach=False).step()",
             "torch"),
        Impl("torch.optim-foreach", "torch", "peer", "foreach=True", "torch.optim.<Rule>(foreach=True).step()",
             "torch"),
        Impl("torch.optim-fused", "torch", "peer", "fused=True", "torch.optim.<Rule>(fused=True).step(), where supported",
             "torch"),
        Impl("optax", "jax", "peer", "optax", "optax.<rule>(matching settings).update + optax.apply_updates, jitted, donated",
             "optax"),
        # each Keras peer runs in a process of its own backend (bench/timing/keras_cases.py)
        Impl("keras-jax", "jax", "peer", "keras-jax",
             "keras.optimizers.<Rule>(matching settings).stateless_apply, jitted, params and optimizer "
             "variables donated (a KERAS_BACKEND=jax process)", "keras"),
        Impl("keras-torch", "torch", "peer", "keras-torch",
             "keras.optimizers.<Rule>(matching settings).apply(grads, variables) (a KERAS_BACKEND=torch process)",
             "keras"),
    ]
    floors = [
        Impl("jax-empty-jit", "jax", "floor", "empty",
             "a jitted identity on the same (params, state, grads), params and state donated: "
             "what any jitted step pays to be called"),
    ]
    every = ours + peers + floors
    return tuple(i for i in every if i.id in QUICK_IMPLS) if quick_sweep() else tuple(every)


def rule_for(name: str):
    from adaptbench import rules

    rule_names()
    return rules.preset(name, CONVENTION, **rules.RULES[name].TYPICAL)


@dataclasses.dataclass(frozen=True)
class StepSpec:
    rule: str
    size: Size
    dtype: str
    device: str
    impl: Impl

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.size.id}-{self.dtype}-{self.device}-{self.impl.id}"

    @property
    def group(self) -> str:
        return f"{self.rule}-{self.size.id}-{self.dtype}-{self.device}"

    @cached_property
    def rule_obj(self):
        return rule_for(self.rule)

    @property
    def bytes_per_step(self) -> int:
        return self.rule_obj.accesses_per_element * ITEMSIZE[self.dtype] * self.size.n

    @property
    def arrays(self) -> int:
        """Distinct n-element arrays one step touches: p, g and each state tensor."""
        return 2 + len(self.rule_obj.state_names)

    @property
    def working_set_bytes(self) -> int:
        return self.arrays * ITEMSIZE[self.dtype] * self.size.n


def probe_elements(n: int, arrays: int) -> int:
    """Elements of each of the probe's two arrays so that its working set (a and b) equals
    that of a step over ``n`` elements touching ``arrays`` arrays: ``ceil(n * arrays / 2)``."""
    return -(-n * arrays // 2)


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    """``a += b`` sized to the working set of the steps over ``size`` that touch ``arrays`` arrays."""

    size: Size
    dtype: str
    device: str
    framework: str
    arrays: int = 3

    @property
    def id(self) -> str:
        return f"probe-{self.size.id}-{self.dtype}-{self.device}-ws{self.arrays}-{self.framework}"

    @property
    def group(self) -> str:
        return f"probe-{self.size.id}-{self.dtype}-{self.device}"

    @property
    def elements(self) -> int:
        return probe_elements(self.size.n, self.arrays)

    @property
    def bytes_per_call(self) -> int:
        return PROBE_ACCESSES * ITEMSIZE[self.dtype] * self.elements

    @property
    def working_set_bytes(self) -> int:
        return 2 * ITEMSIZE[self.dtype] * self.elements


def working_set_arrays() -> tuple[int, ...]:
    """The distinct working-set multiples of the swept rules (p, g and each state tensor)."""
    return tuple(sorted({2 + len(rule_for(r).state_names) for r in rule_names()}))


def step_specs() -> list[StepSpec]:
    """Every rule with every implementation, less the peers that have no setting for it."""
    timed = {(rule, i.peer): i.peer is None or has_peer(rule_for(rule), i.peer) for rule in rule_names()
             for i in impls()}
    return [
        StepSpec(rule, size, dtype, device, impl)
        for device in DEVICES
        for dtype in dtypes()
        for size in sizes()
        for rule in rule_names()
        for impl in impls()
        if timed[rule, impl.peer]
    ]


def probe_specs() -> list[ProbeSpec]:
    return [
        ProbeSpec(size, dtype, device, framework, arrays)
        for device in DEVICES
        for dtype in dtypes()
        for size in sizes()
        for arrays in working_set_arrays()
        for framework in ("torch", "jax")
    ]


_host_cache: dict = {}


def host_data(size: Size) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeded float32 params and grads for ``size``, generated once in NumPy and copied into
    every framework (the design's agreement methodology). Only the latest size is cached (the sweep runs size by size)."""
    if size.id not in _host_cache:
        _host_cache.clear()
        rng = np.random.default_rng([SEED, SIZES.index(size)])
        params = [rng.standard_normal(s, dtype=np.float32) for s in size.shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in size.shapes]
        _host_cache[size.id] = (params, grads)
    return _host_cache[size.id]
