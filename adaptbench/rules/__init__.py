"""adaptbench's specification: the rules' hyperparameters, the conventions, the oracle.

NumPy only; every implementation imports from here and nothing here imports them.
"""

from . import reference
from .hyperparams import RULES, Adadelta, Adagrad, RMSprop, rule_class
from .presets import CONVENTIONS, preset
from .tolerances import TOLERANCES, Tolerance, tolerance

Rule = Adagrad | Adadelta | RMSprop

__all__ = [
    "RULES",
    "CONVENTIONS",
    "Adagrad",
    "Adadelta",
    "RMSprop",
    "Rule",
    "preset",
    "reference",
    "rule_class",
    "TOLERANCES",
    "Tolerance",
    "tolerance",
]
