"""adaptbench's JAX implementations of the registered rules (jax + optax only).

- Factories with torch.optim's keywords and defaults returning optax
  ``GradientTransformation``s whose updates are the deltas to add:
  :func:`adagrad`, :func:`adadelta`, :func:`rmsprop`, :func:`adam`, :func:`adamw`, :func:`sgd`, made from each rule's specification
  (``_core.make_factory``); :func:`register_rule` adds a rule's leaf function (its math)
  and returns its factory (docs/adding-a-rule.md).
- From a ``rules`` object: :func:`transformation`, :func:`init`, :func:`make_step`
  (a jitted ``step(params, state, grads) -> (params, state)`` donating params and state).
- Whole training steps: :func:`make_train_step` (forward, backward and update in one
  jitted call) and :func:`make_train_loop` (many steps in one ``lax.scan``), for a
  ``rules`` object or any optax transformation; :func:`init_optimizer` (``impl_jax/train.py``).
- States are NamedTuples with torch.optim's field names and an int32 ``step``:
  :class:`AdagradState`, :class:`AdadeltaState`, :class:`RMSpropState`, :class:`AdamState`
  (AdamW's too), :class:`SGDState` (absent moments
  are ``None``).

Rounding follows torch.optim's single-tensor code; see ``impl_jax/_core.py`` for how
(16-bit dtypes computed in float32 and rounded per torch op; roots kept out of XLA's
``a / sqrt(b) -> a * rsqrt(b)`` rewrite). float64 needs x64 enabled by the caller
(``with jax.enable_x64(True): ...``); this package never enables it.
"""

from .adadelta import AdadeltaState, adadelta, adadelta_leaf
from .adagrad import AdagradState, adagrad, adagrad_leaf
from .adam import AdamState, adam, adam_leaf
from .adamw import adamw
from .rmsprop import RMSpropState, rmsprop, rmsprop_leaf
from .sgd import SGDState, sgd, sgd_leaf
from .step import make_step
from .train import init_optimizer, make_train_loop, make_train_step
from .transform import init, transformation
from .registry import register_rule

__all__ = [
    "adagrad",
    "adadelta",
    "rmsprop",
    "adam",
    "adamw",
    "sgd",
    "transformation",
    "register_rule",
    "init",
    "make_step",
    "make_train_step",
    "make_train_loop",
    "init_optimizer",
    "AdagradState",
    "AdadeltaState",
    "RMSpropState",
    "AdamState",
    "SGDState",
    "adagrad_leaf",
    "adadelta_leaf",
    "rmsprop_leaf",
    "adam_leaf",
    "sgd_leaf",
]


def __getattr__(name: str):
    # A rule registered after import (a user's, through register_rule): its factory by the
    # rule's name, ``impl_jax.<name>``, as for the shipped rules.
    from ._core import FACTORIES

    if name in FACTORIES:
        return FACTORIES[name]
    raise AttributeError(f"module 'impl_jax' has no attribute {name!r}")
