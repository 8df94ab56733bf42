"""What an optimizer's ``load_state_dict`` (or unpickling) brings in, validated and normalised.

torch.optim's ``Optimizer.load_state_dict`` checks only the number of groups and of
parameters per group, casts every state tensor but ``step`` to its parameter's dtype and
device (``Optimizer._process_value_according_to_param_policy``), and hands the result to
``__setstate__``. The optimizer classes call ``check_loaded`` there, before anything of
theirs is replaced, so a refused state dict leaves the optimizer as it was:

- every param group must give a configuration the class accepts (the same check as the
  constructor's); a refused one is reported as coming from the state dict, with the
  group's index, since the user never passed it;
- each parameter's state holds exactly the tensors of its group's rule (``ValueError``
  naming ``state_dict['state'][i]``), each shaped like its parameter (``ValueError`` naming
  the index and the state's name);
- ``step`` (for the rules that keep one, ``rules.Rule.STEP_IN_STATE``; a tensor of any
  dtype or device, or a Python number from an older torch) must be a whole number >= 0, and becomes a new CPU scalar tensor of torch.optim's scalar dtype
  (float32, float64 under a float64 default dtype: ``functional._scalar_dtype``). A
  counter stored in bfloat16 or float16 (checkpoint tools that cast every tensor) would
  otherwise stop counting at 256 (bf16) or 2048 (fp16): ``x + 1`` rounds back to ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from . import functional

__all__ = ["check_loaded"]


def check_loaded(config: Callable, rule_class, groups: list, states: Mapping, state_keys) -> None:
    """Validate ``groups`` and ``states`` (keyed by parameter) as ``__setstate__`` receives
    them, and normalise each ``step`` in place in ``states``' dicts (fresh copies made by
    the load). ``config(group)`` returns ``(rule, impl)`` or raises; ``state_keys`` is
    ``(always present, may be present)`` for the class's rule. Raises ``ValueError`` or
    ``TypeError`` (``RuntimeError`` from ``config``) naming the group or state entry."""
    required, allowed = state_keys
    entries = []  # (where, group index, index in group, param, state) for each loaded state
    for gi, group in enumerate(groups):
        for j, param in enumerate(group["params"]):
            where = f"state_dict['state'][{len(entries)}]"
            state = states.get(param) if isinstance(param, torch.Tensor) else None
            entries.append((where, gi, j, param, state))
            if not state:
                continue
            if not isinstance(state, dict):
                raise TypeError(f"{where} must be a dict of state tensors, got {type(state).__name__}")
            keys = set(state)
            if not required <= keys or not keys <= allowed:
                raise ValueError(
                    f"{where} has keys {sorted(keys)}, which is not {rule_class.__name__} "
                    f"state (needs {sorted(required)}, allows {sorted(allowed)}); was it saved "
                    f"by another optimizer?"
                )
    rules = []
    for gi, group in enumerate(groups):
        try:
            rules.append(config(group)[0])
        except (ValueError, TypeError, RuntimeError) as error:
            raise type(error)(
                f"state_dict['param_groups'][{gi}] cannot be loaded into {rule_class.__name__}: "
                f"{error}. This setting comes from the state dict (the optimizer that saved it "
                f"had it), not from this optimizer's arguments: change it in "
                f"state_dict['param_groups'][{gi}] before loading (or in a load_state_dict "
                f"pre-hook), or load the state dict into the optimizer that saved it"
            ) from error
    for index, (where, gi, j, param, state) in enumerate(entries):
        if not state:
            continue
        # a FIRST_GRADIENT_STATE entry is made at the parameter's next step, as torch.optim does
        missing = [name for name in rules[gi].state_names
                   if name not in state and name not in rule_class.FIRST_GRADIENT_STATE]
        if missing:
            raise ValueError(
                f"{where} lacks {missing}, which its group's settings need "
                f"(state_dict['param_groups'][{gi}]: {rules[gi]!r})"
            )
        for name in sorted(set(state) - {"step"}):
            value = state[name]
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{where}[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
            if value.shape != param.shape:
                raise ValueError(
                    f"{where}[{name!r}] has shape {tuple(value.shape)}, but its parameter "
                    f"(param {index}: param_groups[{gi}]['params'][{j}]) has shape "
                    f"{tuple(param.shape)}"
                )
    for where, _, _, _, state in entries:
        if state and "step" in state:
            state["step"] = _normalised_step(state["step"], f"{where}['step']")


def _normalised_step(value, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{where} must be a one-element tensor, got shape {tuple(value.shape)}")
        if value.is_complex():
            raise TypeError(f"{where} must be real, got dtype {value.dtype}")
        count = value.item()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        count = value
    else:
        raise TypeError(f"{where} must be a tensor or a number, got {type(value).__name__}")
    if not (math.isfinite(count) and count >= 0 and count == int(count)):
        raise ValueError(f"{where} must be a whole number of steps >= 0, got {count!r}")
    dtype = functional._scalar_dtype()
    step = torch.tensor(float(count), dtype=dtype)
    if step.item() != count:
        raise ValueError(
            f"{where} = {int(count)} cannot be held exactly by the {dtype} step counter "
            f"(torch.optim's scalar dtype); set torch.set_default_dtype(torch.float64) "
            f"before loading to count in float64"
        )
    return step
