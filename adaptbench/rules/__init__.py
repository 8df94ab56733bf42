"""adaptbench's specification: the rules, their conventions, the oracle. NumPy only.

A rule is one module (``adagrad.py``, ``adadelta.py``, ``rmsprop.py``, ``sgd.py``, or a
user's own) holding a ``Rule`` dataclass registered with :func:`register`; ``RULES`` maps
every registered name to its class, in registration order. Every implementation imports
from here and nothing here imports them (docs/adding-a-rule.md).
"""

from . import reference
from .base import Peer, Rule
from .presets import CONVENTIONS, preset
from .registry import RULES, register, rule_class
from .tolerances import TOLERANCES, Tolerance, tolerance

# Registration order is import order, the tutorial's: it orders every table and sweep.
from .adagrad import Adagrad  # noqa: E402, I001
from .adadelta import Adadelta  # noqa: E402
from .rmsprop import RMSprop  # noqa: E402
from .adam import Adam  # noqa: E402
from .adamw import AdamW  # noqa: E402
from .sgd import SGD  # noqa: E402

__all__ = [
    "RULES",
    "CONVENTIONS",
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Adam",
    "AdamW",
    "SGD",
    "Peer",
    "Rule",
    "preset",
    "reference",
    "register",
    "rule_class",
    "TOLERANCES",
    "Tolerance",
    "tolerance",
]
