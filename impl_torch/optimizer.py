"""``torch.optim.Optimizer`` subclasses, one per registered rule, made from its specification.

``optimizer_class(name)`` makes the class of a rule of ``adaptbench.rules.RULES`` whose
math ``impl_torch`` has (``register_rule``): torch.optim's constructor arguments in
torch.optim's order and kinds (the rule's ``TORCH_POSITIONAL``/``TORCH_KEYWORD_ONLY``),
defaults from the rule's dataclass (torch.optim's), then keyword-only every other field of
the rule (the switches that reproduce other conventions: ``eps_in_sqrt``,
``decoupled_weight_decay``, ``complex_as_real``, optax's options, ...), ``fused`` where
torch.optim's class lacks it, and ``impl``. ``impl_torch.Adagrad`` etc. are these classes.

torch.optim keywords map as follows: ``foreach=True/False`` -> impl ``"foreach"``/``"loop"``
(an explicit ``impl`` that disagrees is a ``ValueError``); ``maximize`` goes into the rule;
``fused=True`` -> impl ``"fused"`` (``impl_torch/fused.py``, torch.compile; a
``RuntimeError`` at construction where torch.compile is unavailable);
``differentiable=True`` runs the per-tensor math through ``ops.AutogradOps`` with
gradients enabled, so the step is differentiable w.r.t. parameters, gradients, state and
tensor hyperparameters' uses (impl ``"loop"``; with ``foreach``/``fused``/another impl it
is a ``ValueError``); ``capturable=True`` is refused (``ValueError``); False/None are
accepted. ``impl``: ``"loop"``, ``"foreach"``, ``"fused"``, ``"auto"`` (the default) or a
registered name (``impl_torch.IMPLS``). Complex parameters are stepped as real views
(``torch.view_as_real``), as torch.optim does; sparse COO gradients are taken by the rules
that register a sparse step (as torch.optim's Adagrad), refused by the others
(``TypeError``). With ``fused=True`` (or ``impl="fused"``) the optimizer declares
``_step_supports_amp_scaling`` and honours ``grad_scale``/``found_inf`` from
``torch.amp.GradScaler`` (see ``step``). Every param group builds and validates its
``rules`` object when it is added (constructor and ``add_param_group``) and again at each
step whose hyperparameters differ from the last validated ones (so LR schedulers that
write ``group["lr"]`` take effect). Each group has a plan (``plan.py``: which kernel steps
which tensors, ``functional.plan``), made by a full check of its parameters, gradients and
state and kept while nothing it depends on changes (the same tensors with the same shapes,
dtypes and devices, the same state tensors); a step then checks each gradient's shape,
dtype, device and layout against its parameter and runs the plan. With the hooks' wrapper
(``step_hooks.py``, the profiler range opened only while a profiler records) a small
model's step costs less Python than torch.optim's.

State per parameter is keyed by the rule's state names (torch.optim's: ``"step"``, a CPU
float32 scalar tensor as torch.optim keeps it when not capturable, then the rule's
``STATE``), so state dicts load both ways. State is created lazily at a parameter's first
step with a gradient, or when the parameter is added for the rules whose torch.optim class
does so (``register_rule(..., state_at_construction=True)``).

``DTensor`` parameters (FSDP2's ``fully_shard``, ``distribute_tensor``) get ``DTensor``
state sharded like them, and every impl steps each rank's local shards
(``impl_torch/distributed.py``).

Deliberate differences (docs/errors-and-edge-cases.md has the cases and their tests):

- torch.optim.Adagrad fills ``"sum"`` with the *constructor's* ``initial_accumulator_value``
  for every group (and ``self.defaults``' value for lazily created state), ignoring a
  group's own value; here each group's own value is used.
- A parameter converted after its state was made (``model.double()``, ``model.to(device)``):
  at the next step its state is cast and moved to the parameter's dtype and device, as
  torch.optim's ``load_state_dict`` would do (torch.optim mixes a float32 state into float64
  math, or fails on another device); the step counter stays a CPU scalar.
- ``load_state_dict`` validates what it loads before replacing anything (group settings,
  each state's keys and shapes) and makes ``step`` a CPU float32 scalar (torch.optim keeps a
  bfloat16/float16 counter, which then stops counting).
- ``share_memory()`` shares every state tensor, ``step`` included.
- A step that raises changes nothing: lazy state is created only once every group is valid.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import Tensor

from adaptbench import rules

from . import caches, functional, loading, plan, step_hooks
from .functional import DEFAULT_IMPL, IMPLS, init_state
from .updates import STATE_AT_CONSTRUCTION

__all__ = ["optimizer_class", "optimizer_for"]

_FLAG_KEYS = ("foreach", "fused", "capturable", "differentiable", "impl")
# The flags that choose the code a group runs, not the rule it computes: kept from the
# optimizer, not the checkpoint, by ``load_state_dict``.
_RUN_KEYS = ("foreach", "fused", "differentiable", "impl")


def _resolve(rule_class, values: tuple, flags: tuple):
    """(rule, impl name) for one param group, or a ValueError/TypeError naming the key;
    ``RuntimeError`` naming the reason when the impl is ``"fused"`` and torch.compile is
    unavailable here (checked at construction, never a silent fall-back)."""
    rule, impl = _resolve_names(rule_class, values, flags)
    if impl == "fused":
        from . import fused as _fused

        _fused.check_available()
    return rule, impl


def _resolve_names(rule_class, values: tuple, flags: tuple):
    rule = rule_class(**rule_class.unpack_keywords(dict(zip(_rule_fields(rule_class), values))))
    functional.check_rule(rule)
    foreach, fused, capturable, differentiable, impl = flags
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True, False or None, got {value!r}")
    if capturable:
        raise ValueError(
            "capturable=True is not supported by impl_torch (CUDA-graph capture); "
            "use torch.optim for it, or pass capturable=False"
        )
    if foreach and fused:
        raise ValueError("foreach=True and fused=True cannot be set together")
    if differentiable:
        if differentiable is not True:
            raise TypeError(f"differentiable must be True or False, got {differentiable!r}")
        if foreach or fused or impl not in (None, "loop", "auto"):
            raise ValueError(
                f"differentiable=True runs the per-tensor math (impl 'loop'); it conflicts "
                f"with foreach={foreach!r}, fused={fused!r}, impl={impl!r} (torch.optim "
                f"refuses foreach and fused with differentiable too)"
            )
        return rule, "loop"
    if impl is not None:
        if not isinstance(impl, str):
            raise TypeError(f"impl must be a str or None, got {type(impl).__name__} {impl!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {tuple(IMPLS)} or None, got {impl!r}")
        if foreach is True and impl != "foreach":
            raise ValueError(f"foreach=True conflicts with impl={impl!r}; pass one of them")
        if foreach is False and impl == "foreach":
            raise ValueError("foreach=False conflicts with impl='foreach'; pass one of them")
        if fused is True and impl != "fused":
            raise ValueError(f"fused=True conflicts with impl={impl!r}; pass one of them")
        if fused is False and impl == "fused":
            raise ValueError("fused=False conflicts with impl='fused'; pass one of them")
        return rule, impl
    if fused:
        return rule, "fused"
    if foreach is True:
        return rule, "foreach"
    if foreach is False:
        return rule, "loop"
    return rule, DEFAULT_IMPL


@caches.memoized(maxsize=512)
def _resolve_cached(rule_class, values: tuple, flags: tuple, types: tuple):
    """``_resolve``, cached. ``types`` (of values and flags) is part of the key because
    ``True == 1`` with one hash: without it ``centered=1`` would reuse ``centered=True``'s
    accepted configuration instead of being refused."""
    return _resolve(rule_class, values, flags)


# What eager calls resolved, for steps traced by a user's torch.compile (``_config``);
# keyed like ``_resolve_cached`` but without ``capturable``.
_RESOLVED = caches.RESOLVED
_RESOLVED_MAX = caches.RESOLVED_MAX


def _traced_key(rule_class, values: tuple, flags: tuple) -> tuple:
    flags = flags[:2] + flags[3:]
    return (rule_class, values, flags, tuple(map(type, values + flags)))


# A param group's keys for the rule's fields, torch.optim's: the fields, those of a
# ``TORCH_TUPLES`` argument packed into it (Adam's ``betas``). Looked up, not computed:
# Dynamo cannot trace ``dataclasses.fields`` of a class. Filled by ``optimizer_class`` for
# each rule it makes a class for.
_FIELDS: dict[type, tuple[str, ...]] = {}


def _group_keys(rule_class) -> tuple[str, ...]:
    keys = []
    for field in dataclasses.fields(rule_class):
        packed = next((p for p, parts in rule_class.TORCH_TUPLES.items() if field.name in parts), field.name)
        if packed not in keys:
            keys.append(packed)
    return tuple(keys)


def _packed(rule_class, kwargs: dict, base) -> dict:
    """``kwargs`` as a param group keeps them: the fields of a ``TORCH_TUPLES`` argument
    given on their own (``beta1=0.8``) packed into it (``betas``), its other entries from
    ``base[packed]``; both spellings at once is a ``ValueError`` (``Rule.unpack_keywords``)."""
    for packed, parts in rule_class.TORCH_TUPLES.items():
        if not any(f in kwargs for f in parts):
            continue
        fallback = base[packed]
        fields = rule_class.unpack_keywords(
            {packed: kwargs.get(packed, fallback), **{f: kwargs.get(f) for f in parts}}, defaults={packed: fallback}
        )
        kwargs = {k: v for k, v in kwargs.items() if k not in parts}
        kwargs[packed] = tuple(fields[f] for f in parts)
    return kwargs


def _unscale_(grads: list[Tensor], grad_scale: Tensor) -> None:
    """``g /= grad_scale`` in place for every gradient (AMP; sparse ones by their values)."""
    for g in grads:
        if g.layout == torch.strided:
            g.div_(grad_scale.to(g.device))
        else:
            g._values().div_(grad_scale.to(g.device))


def _rule_fields(rule_class) -> tuple[str, ...]:
    return _FIELDS[rule_class]


def _hyper_value(name: str, value):
    if type(value) is tuple:  # a TORCH_TUPLES argument (betas), whose entries may be tensors
        return tuple(_hyper_value(f"{name}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, Tensor):
        # torch.optim accepts a one-element tensor lr; its non-capturable paths use .item().
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element, got shape {tuple(value.shape)}")
        return value.item()
    return value


def _group_names(gi: int, index: list[int]):
    """Names for ``functional._check``'s errors: entry ``i`` of a step's lists is
    ``param_groups[gi]['params'][index[i]]``."""

    def where(kind: str, i: int) -> str:
        param = f"param_groups[{gi}]['params'][{index[i]}]"
        if kind == "params":
            return param
        return f"{param}.grad" if kind == "grads" else f"state[{param}]"

    return where


class _RuleOptimizer(torch.optim.Optimizer):
    """Shared machinery: group validation, lazy state, step through ``impl_torch.step``."""

    rule_class: type = None  # set by optimizer_class
    # Keys torch.optim's groups may lack (an older torch or torch.optim itself), with the
    # value that gives torch.optim's meaning, used when a state dict is loaded.
    _setstate_defaults: dict = {}
    # Per-parameter state keys: (always present, may be present).
    _state_keys: tuple = (frozenset(), frozenset())
    # The constructor's signature (torch.optim's, then this library's keyword-only extras).
    _signature: inspect.Signature = None

    def __init__(self, params, *args, **kwargs) -> None:
        try:
            bound = self._signature.bind(self, params, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}(): {exc}") from None
        bound.apply_defaults()
        defaults = dict(bound.arguments)
        del defaults["self"]
        params = defaults.pop("params")
        defaults = _packed(self.rule_class, defaults, defaults)
        _, impl = self._config(defaults)
        super().__init__(params, defaults)
        if impl == "fused":
            # torch.amp.GradScaler then hands over grad_scale/found_inf instead of
            # unscaling and checking the gradients itself (as for torch.optim's fused).
            self._step_supports_amp_scaling = True

    # torch.optim.Optimizer wraps ``step`` with this (``_patch_step_function``): the same
    # hooks and profiler range, the range opened only while a profiler records.
    profile_hook_step = staticmethod(step_hooks.hooked_step)

    # --- configuration -----------------------------------------------------------------
    def _config(self, group: dict):
        """(rule, impl name) for a param group (cached by the group's values)."""
        fields = _rule_fields(self.rule_class)
        missing = [k for k in fields if k not in group]
        if missing:
            raise ValueError(f"param group lacks {missing}")
        values = tuple(_hyper_value(k, group[k]) for k in fields)
        flags = tuple(group.get(k) for k in _FLAG_KEYS)
        if torch.compiler.is_dynamo_compiling():
            # Traced inside a user's torch.compile: the (rule, impl) that construction
            # and eager steps resolved (Dynamo cannot build the frozen rules dataclass).
            # Dynamo shows every group with capturable=True while it traces an optimizer
            # (torch/_dynamo/variables/optimizer.py, _set_capturable); ours refuses True
            # at construction, so the key leaves it out.
            # Values no eager call resolved (a new lr) raise KeyError here: a graph break
            # under fullgraph=False (the step then runs eagerly once and resolves them),
            # an error under fullgraph=True.
            return _RESOLVED[_traced_key(self.rule_class, values, flags)]
        try:
            hash((values, flags))
        except TypeError:
            return _resolve(self.rule_class, values, flags)  # raises a clear error
        out = _resolve_cached(self.rule_class, values, flags, tuple(map(type, values + flags)))
        if len(_RESOLVED) >= _RESOLVED_MAX:  # e.g. a scheduler's new lr at every step
            _RESOLVED.clear()
        _RESOLVED[_traced_key(self.rule_class, values, flags)] = out
        return out

    def group_rules(self) -> list:
        """The ``rules`` object of each param group, as the next step would use it."""
        return [self._config(g)[0] for g in self.param_groups]

    def group_impls(self) -> list[str]:
        """The impl name (``"loop"``, ``"foreach"``, ...) each param group's step uses."""
        return [self._config(g)[1] for g in self.param_groups]

    def step_plan(self) -> list[list[tuple[str, int]]]:
        """What each param group's last step ran, as ``(kernel, number of tensors)`` parts,
        e.g. ``[[("fused", 2), ("loop", 3)]]`` for a group whose two large tensors
        ``"auto"`` fused (``functional.part_name`` names the kernels). An empty list for a
        group not stepped yet, or re-checked at every step (sparse gradients)."""
        plans = self.__dict__.get("_plans", [])
        out = []
        for gi in range(len(self.param_groups)):
            kept = plans[gi] if gi < len(plans) else None
            if kept is None:
                out.append([])
                continue
            n = len(kept.index)
            out.append([(functional.part_name(fn), n if idx is None else len(idx)) for fn, idx in kept.parts])
        return out

    def add_param_group(self, param_group: dict) -> None:
        """torch.optim's ``add_param_group``, validating the group's rule and impl first."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):
            params = list(params)
        param_group = _packed(self.rule_class, {**param_group, "params": params}, self.defaults)
        filled = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self._config(filled)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch.optim's ``load_state_dict`` (torch.optim's own state dicts of the same rule
        load too: its pre-hooks run, then every state tensor but ``step`` is cast and moved
        to its parameter's dtype and device), then what it brings in is validated and
        normalised before anything is replaced (``loading.check_loaded``): each group's
        settings as the constructor checks them (a refused one, e.g. ``capturable=True``,
        is reported as coming from the state dict); each parameter's state holds its rule's
        tensors (torch.optim takes another rule's state and fails at the next step with a
        bare ``KeyError``), shaped like the parameter (``ValueError`` naming the index and
        the state's name); ``step`` becomes a CPU float32 scalar (float64 under a float64
        default dtype), so that a counter saved in bfloat16/float16 counts on.
        A ``ValueError``/``TypeError`` leaves the optimizer unchanged.

        How each group runs stays as this optimizer was built (``_RUN_KEYS``: ``impl``,
        ``foreach``, ``fused``, ``differentiable``), whatever the checkpoint says: a state
        dict saved from ``impl="fused"`` loaded into ``impl="loop"`` keeps ``"loop"``
        (torch.optim takes these from the checkpoint too; here they describe the code
        that runs, not the rule it computes)."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(groups, list) and len(groups) == len(self.param_groups):
            kept = [
                {**saved, **{k: ours[k] for k in _RUN_KEYS if k in ours}} if isinstance(saved, dict) else saved
                for saved, ours in zip(groups, self.param_groups)
            ]
            state_dict = {**state_dict, "param_groups": kept}
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict) -> None:
        # load_state_dict and unpickling both come here; check before anything is replaced.
        groups = state.get("param_groups", [])
        for group in groups:
            for key, value in self._setstate_defaults.items():
                group.setdefault(key, value)
        loading.check_loaded(
            self._config, self.rule_class, groups, state.get("state", {}), self._state_keys
        )
        super().__setstate__(state)
        self.__dict__.pop("_plans", None)  # what earlier steps checked is gone with them

    def share_memory(self) -> None:
        """Moves every state tensor, ``step`` included, to shared memory
        (``Tensor.share_memory_()``), for Hogwild-style training: processes forked (or
        spawned with the optimizer) afterwards step the same state. Parameters without
        state yet (Adadelta and RMSprop create it lazily) get their initial state first,
        the same as their first step would create. torch.optim.Adagrad's ``share_memory``
        shares only ``sum``, so each process counts its own ``step`` (and with ``lr_decay``
        decays its own learning rate); Adadelta and RMSprop have none there.

        A state that torch.optim creates at the first step from the gradient
        (``rules.Rule.FIRST_GRADIENT_STATE``: SGD's ``momentum_buffer``; torch.optim.SGD has
        no ``share_memory``) is created here as zeros, since one created at the first step
        would be private to the process taking it. That step is then an ordinary step from
        a zero buffer, ``momentum*0 + (1 - dampening)*g``: torch.optim's copy of ``g`` when
        ``dampening`` is 0 (but for the sign of a zero gradient), ``(1 - dampening)*g``
        otherwise.

        Call it after the model's final ``.to(...)``: a state cast to a converted parameter
        (see ``step``) is a new, private tensor."""
        for group in self.param_groups:
            rule, _ = self._config(group)
            first_names = [n for n in rule.state_names if n in rule.FIRST_GRADIENT_STATE]
            for p in group["params"]:
                state = self.state.get(p) or init_state(rule, p)
                for name in first_names:
                    if name not in state:
                        state[name] = functional._filled(rule, name, p)
                # (an empty entry, left by a lookup of ``opt.state[p]``, is replaced too)
                if state and self.state.get(p) is not state:
                    self.state[p] = state
                for value in state.values():
                    if isinstance(value, Tensor):
                        value.share_memory_()

    # --- the step ------------------------------------------------------------------------
    def step(self, closure=None):
        """One step for every parameter with a gradient. ``closure`` re-evaluates the
        loss (run with gradients enabled) and its value is returned.

        Every group is checked first (``TypeError``/``ValueError`` naming
        ``param_groups[g]['params'][j]``, its ``.grad`` or its state); only then is lazy state
        created, and the state of a parameter converted since (``model.double()``,
        ``model.to(device)``) cast and moved to its dtype and device, so a step that raises
        changes nothing.

        Runs under ``torch.no_grad()``, or with gradients enabled when the optimizer was
        built with ``differentiable=True`` (torch.optim's rule: ``self.defaults``).
        AMP: when ``torch.amp.GradScaler`` has set ``grad_scale``/``found_inf`` on the
        optimizer (it does so when ``_step_supports_amp_scaling`` is True, i.e. for
        ``fused=True``/``impl="fused"``, as for torch.optim's fused optimizers), a nonzero
        ``found_inf`` skips the step (nothing changes, step counts included) and the
        gradients are divided in place by ``grad_scale`` first (torch.optim's fused
        kernels store the unscaled gradients back too).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and float(found_inf) != 0:
            return loss
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
            # The plans are run from here, not from a helper: the frames under the user's
            # ``step()`` are no more than torch.optim's (tests/test_torch_default_path.py).
            for rule, parts, local, first in self._planned_groups():
                if local[0]:
                    functional.run_plan(parts, rule, *local, first)
        return loss

    def _planned_groups(self) -> list:
        """``(rule, parts, (params, grads, states), first)`` per group, the lists this
        rank's local tensors: every group validated (or accepted by its plan,
        ``plan.GroupPlan``) and lazy state committed, gradients unscaled (AMP); ``first``:
        the positions of the parameters whose first step this is
        (``functional.with_first_state``), empty on a planned step."""
        grad_scale = getattr(self, "grad_scale", None)
        # Every group is validated before any state is created, cast or stepped, so that a
        # step that raises changes nothing (lazy state is committed only afterwards).
        traced = torch.compiler.is_dynamo_compiling()
        # Traced by torch.compile, the checks run once at trace time: no plan is kept.
        plans = () if traced else self.__dict__.setdefault("_plans", [])
        work, fresh = [], []
        for gi, group in enumerate(self.param_groups):
            kept = None if traced or gi >= len(plans) else plans[gi]
            if kept is not None:
                values = plan.hyperparameters(group, self._hyper_keys)
                config = kept.config(group, values)
                same = config is not None
                if not same:  # e.g. a scheduler's new lr: the stepped tensors may still be valid
                    config = self._config(group)
                    same = (
                        config[1] == kept.impl
                        and bool(group.get("differentiable")) == kept.differentiable
                        and _same_state_layout(config[0], kept.rule)
                    )
                lists = kept.reuse(group["params"], self.state) if same else None
                if lists is not None:
                    rule, impl = config
                    if kept.rule is not rule or kept.group is not group:
                        kept.adopt(group, values, rule)
                    if not kept.plain:
                        lists = functional.local_views(rule, *lists, where=_group_names(gi, kept.index))
                    work.append((rule, kept.parts, lists, ()))
                    continue
            work.append(self._check_group(gi, group))
            fresh.append(gi)

        for gi in fresh:
            _, _, _, (params, _, states), pending, _, _ = work[gi]
            for k in pending:
                if not states[k] and params[k] not in self.state:
                    continue  # a rule that keeps no state: no entry, as torch.optim.SGD
                # A new or cast state (a dict of ours): committed now that every group passed.
                live = self.state[params[k]]
                live.update(states[k])
                states[k] = live
        if fresh and not traced:
            self._keep_plans(fresh, work)
        work = [(w[0], w[2], w[5], w[6]) if gi in fresh else w for gi, w in enumerate(work)]
        if grad_scale is not None:
            _unscale_([g for _, _, (_, grads, _), _ in work for g in grads], grad_scale)
        return work

    def _check_group(self, gi: int, group: dict) -> tuple:
        """The full check of one group: ``(rule, impl, parts, (params, grads, states),
        pending, local views, first)``, the states new dicts where lazy state is still to be
        created (at init or, ``first``, at a first step: ``functional.with_first_state``) or
        a state to be cast, at the positions ``pending`` (committed by the caller once every
        group passed); ``parts``: ``functional.plan`` for the local views."""
        rule, impl = self._config(group)
        functional.check_impl(impl)
        differentiable = bool(group.get("differentiable"))
        params, grads, states, index, pending = [], [], [], [], []
        for j, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            state = self.state.get(p)
            if not state:
                pending.append(len(params))
            params.append(p)
            grads.append(p.grad)
            states.append(state if state else init_state(rule, p))
            index.append(j)
        names = _group_names(gi, index)
        cast: list[int] = []
        checked = functional._check(rule, params, grads, states, where=names, cast_state=cast)
        functional.check_devices(impl, checked[0])
        stepped, first = functional.with_first_state(rule, checked[0], checked[2])
        checked = (checked[0], checked[1], stepped)
        # DTensors as this rank's local shards: views of the very tensors committed below.
        local = functional.local_views(rule, *checked, where=names)
        parts = functional.plan(rule, impl, local[0], local[1], differentiable=differentiable)
        return (rule, impl, parts, checked, sorted(set(pending) | set(cast) | set(first)), local, first)

    def _keep_plans(self, fresh: list[int], work: list) -> None:
        """Keep each freshly checked group's plan with what its check saw (``plan.GroupPlan``)."""
        plans = self._plans
        del plans[len(self.param_groups):]
        plans.extend([None] * (len(self.param_groups) - len(plans)))
        for gi in fresh:
            rule, impl, parts, (params, grads, states), _, local, _ = work[gi]
            group = self.param_groups[gi]
            if any(g.layout != torch.strided for g in grads):
                plans[gi] = None  # sparse gradients: the full check at every step
                continue
            plans[gi] = plan.GroupPlan(
                group, plan.hyperparameters(group, self._hyper_keys), rule, impl,
                bool(group.get("differentiable")), params, states, plain=local[0] is params, parts=parts,
            )

    @property
    def _hyper_keys(self) -> tuple:
        return _rule_fields(self.rule_class) + _FLAG_KEYS


def _same_state_layout(rule, other) -> bool:
    """Whether a parameter validated for ``other`` needs the same state under ``rule``
    (a scheduler's new ``lr`` keeps it; ``momentum``, ``centered`` or ``complex_as_real``
    change what the state must hold)."""
    return rule.state_names == other.state_names and rule.complex_as_real == other.complex_as_real


_FLAG_DEFAULTS = {"foreach": None, "maximize": False, "capturable": False, "differentiable": False,
                  "fused": None}
_FLAG_ANNOTATIONS = {"foreach": "bool | None", "maximize": "bool", "capturable": "bool",
                     "differentiable": "bool", "fused": "bool | None"}
_CLASS_CACHE: dict[type, type] = {}


def _signature(rule_class) -> inspect.Signature:
    """``(self, params, <torch.optim's arguments, in its order and kinds>, *, <the rule's
    other fields>, [fused,] impl=None)``, every default the dataclass's (torch.optim's)."""
    fields = {f.name: f for f in dataclasses.fields(rule_class)}
    packed_fields = {f for parts in rule_class.TORCH_TUPLES.values() for f in parts}
    P = inspect.Parameter

    def param(name: str, kind) -> inspect.Parameter:
        if name in rule_class.TORCH_TUPLES:
            default = tuple(fields[f].default for f in rule_class.TORCH_TUPLES[name])
            annotation = f"tuple[{', '.join(['float'] * len(default))}]"
        elif name in packed_fields:  # the other spelling of a tuple's entry
            default, annotation = None, "float | None"
        elif name in fields:
            default = fields[name].default
            annotation = "float | Tensor" if name == "lr" else type(default).__name__
            # torch.optim writes a zero default as 0 (its repr shows "weight_decay: 0")
            default = 0 if type(default) is float and default == 0.0 else default
        else:
            default, annotation = _FLAG_DEFAULTS[name], _FLAG_ANNOTATIONS[name]
        return P(name, kind, default=default, annotation=annotation)

    torch_names = rule_class.TORCH_POSITIONAL + rule_class.TORCH_KEYWORD_ONLY
    params = [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD)]
    params += [param(n, P.POSITIONAL_OR_KEYWORD) for n in rule_class.TORCH_POSITIONAL]
    params += [param(n, P.KEYWORD_ONLY) for n in rule_class.TORCH_KEYWORD_ONLY]
    # every rule takes these, whether torch.optim's class does or not (fused: the compiled impl)
    params += [param(n, P.KEYWORD_ONLY) for n in ("foreach", "maximize", "differentiable", "fused")
               if n not in torch_names]
    params += [param(n, P.KEYWORD_ONLY) for n in fields if n not in torch_names and n != "maximize"]
    params.append(P("impl", P.KEYWORD_ONLY, default=None, annotation="str | None"))
    return inspect.Signature(params, return_annotation=None)


def optimizer_class(name: str) -> type:
    """The ``torch.optim.Optimizer`` subclass of the registered rule ``name``
    (``impl_torch.Adagrad`` is ``optimizer_class("adagrad")``), made once from the rule's
    dataclass and torch.optim's signature (``TORCH_POSITIONAL``/``TORCH_KEYWORD_ONLY``):
    torch.optim's arguments in its order and kinds, then the rule's other fields and
    ``impl`` keyword-only. Named as torch.optim names the rule (``PEERS["torch"]``), else
    as its dataclass. ``ValueError`` for a rule not registered in ``rules`` or without
    math in ``impl_torch`` (``register_rule``)."""
    rule_class = rules.rule_class(name)
    made = _CLASS_CACHE.get(rule_class)
    if made is not None:
        return made
    default_rule = rule_class(**rule_class.PRESETS.get("torch", {}))
    functional.check_rule(default_rule)
    signature = _signature(rule_class)
    _FIELDS[rule_class] = _group_keys(rule_class)
    defaults = {p.name: p.default for p in list(signature.parameters.values())[2:]}
    torch_peer = rule_class.PEERS.get("torch")
    class_name = functional._class_name(rule_class.name)
    extras = [n for n in list(signature.parameters)[2:]
              if n not in rule_class.TORCH_POSITIONAL + rule_class.TORCH_KEYWORD_ONLY]
    namespace = {
        "__module__": __name__.rsplit(".", 1)[0],
        "__qualname__": class_name,
        "__doc__": (
            f"{class_name} with torch.optim.{class_name}'s signature"
            f"{'' if torch_peer else ' (no torch.optim class: the rule''s own order)'}, plus "
            f"{', '.join(f'``{n}``' for n in extras)}. The rule: ``rules.{rule_class.__name__}``; "
            f"its math: ``impl_torch.{rule_class.name}``."
        ),
        "rule_class": rule_class,
        "_signature": signature,
        "_setstate_defaults": {k: v for k, v in defaults.items() if k != "lr" and k in _FIELDS[rule_class] + _FLAG_KEYS},
        "_state_keys": (
            frozenset(functional.state_keys(default_rule)) - rule_class.FIRST_GRADIENT_STATE,
            frozenset(("step",) if rule_class.STEP_IN_STATE else ()) | set(rule_class.STATE),
        ),
    }
    cls = type(class_name, (_RuleOptimizer,), namespace)

    def __init__(self, params, *args, **kwargs):
        _RuleOptimizer.__init__(self, params, *args, **kwargs)

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{class_name}.__init__"
    cls.__init__ = __init__
    if rule_class.name in STATE_AT_CONSTRUCTION:
        cls.add_param_group = _add_param_group_with_state
    return _CLASS_CACHE.setdefault(rule_class, cls)


def _add_param_group_with_state(self, param_group: dict) -> None:
    """``add_param_group``, creating every new parameter's state now (torch.optim.Adagrad
    creates ``step`` and ``sum`` in ``__init__``)."""
    _RuleOptimizer.add_param_group(self, param_group)
    group = self.param_groups[-1]
    rule, _ = self._config(group)
    for p in group["params"]:
        if len(self.state[p]) == 0:
            self.state[p].update(init_state(rule, p))


def optimizer_for(rule, params, impl: str | None = None) -> _RuleOptimizer:
    """The optimizer for a ``rules`` object: ``optimizer_for(rules.preset("rmsprop",
    "optax"), model.parameters())`` is an ``RMSprop`` with exactly that rule's fields."""
    functional.check_rule(rule)
    return optimizer_class(rule.name)(params, **rule.torch_keywords(), impl=impl)
