"""AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW computes it, in JAX: Adam's leaf
(``impl_jax/adam.py``) under ``rules.AdamW``, whose decoupled weight decay the driver
applies (``impl_jax/_core.py``). Its state is ``AdamState``."""

from __future__ import annotations

import dataclasses

from adaptbench import rules

from . import _core
from .adam import SPEC as ADAM_SPEC

SPEC = dataclasses.replace(ADAM_SPEC, rule_cls=rules.AdamW)

adamw = _core.register(SPEC)
