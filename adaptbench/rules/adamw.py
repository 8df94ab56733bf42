"""AdamW's specification (Loshchilov & Hutter 2019), as torch.optim.AdamW writes it: Adam
(``rules.Adam``, whose docstring gives the formula) with the weight decay decoupled from
the gradient, ``p <- p - lr*weight_decay*p`` before the update, and torch.optim.AdamW's
defaults (``weight_decay=0.01``; optax.adamw's is 1e-4, the ``"optax"`` preset).

Sources: torch/optim/adamw.py (an ``Adam`` with ``decoupled_weight_decay=True``);
optax/_src/alias.py ``adamw`` (``scale_by_adam``, ``add_decayed_weights``,
``scale_by_learning_rate``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .adam import Adam
from .base import Peer
from .registry import register

__all__ = ["AdamW"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): ``rules.Adam`` with ``decoupled_weight_decay=True``
    and ``weight_decay=0.01``, torch.optim.AdamW's defaults. optax.adamw's ``mask`` is not
    an option here (one rule per parameter group: put the parameters it would mask in a
    group with ``weight_decay=0``)."""

    name: ClassVar[str] = "adamw"
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=0.02),
        "torch": dict(),
        "optax": dict(weight_decay=1e-4, complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = (
        "maximize", "foreach", "capturable", "differentiable", "fused",
    )
    PEERS: ClassVar[dict] = {
        "torch": Peer("AdamW", {}, fixed=dict(eps_root=0.0, nesterov=False, amsgrad_bias_corrected=False,
                                              decoupled_weight_decay=True, complex_as_real=True)),
        "optax": Peer("adamw", {"lr": "learning_rate", "beta1": "b1", "beta2": "b2"},
                      fixed=dict(maximize=False, decoupled_weight_decay=True, amsgrad=False,
                                 amsgrad_bias_corrected=False, complex_as_real=False)),
    }

    weight_decay: float = 1e-2
    decoupled_weight_decay: bool = True
