"""AdamW's update (``rules.AdamW``): Adam's math (``impl_torch/adam.py``), whose
decoupled weight decay the rule switches on, registered under AdamW's name."""

from __future__ import annotations

from .adam import update
from .updates import register_rule

__all__ = ["update"]

register_rule("adamw", update)
