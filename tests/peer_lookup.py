"""The one place tests find a registered rule's classes: ours (impl_torch, impl_jax) and its
peers' (torch.optim, optax, Keras), each read off the rule's specification
(``rules.RULES[name].PEERS``) and the frameworks' registries, never a per-rule table.

A test that needs a peer parametrizes over :func:`rule_names` with that peer, so that a
rule registered without it (a user's own, ``pytest --rules-module``) is left out rather
than failing on a missing class.
"""

from __future__ import annotations

import importlib
import inspect

from adaptbench import rules


def rule_names(*peers: str) -> list[str]:
    """The registered rules, in registration order, that name every one of ``peers``
    (``"torch"``, ``"optax"``, ``"keras"``) in their ``PEERS``; all of them without."""
    return [name for name, cls in rules.RULES.items() if all(p in cls.PEERS for p in peers)]


def peer_name(name: str, peer: str) -> str:
    """How ``peer`` names the rule: ``peer_name("rmsprop", "torch") == "RMSprop"``."""
    return rules.RULES[name].PEERS[peer].name


# The frameworks are imported on first use: the torch-only run (`make test-torch-latest`)
# has no JAX, and Keras reads its backend from the environment when first imported.


def torch_class(name: str) -> type:
    """torch.optim's class for the rule ``name``."""
    return getattr(importlib.import_module("torch.optim"), peer_name(name, "torch"))


def ours_torch_class(name: str) -> type:
    """impl_torch's ``torch.optim.Optimizer`` subclass for the rule ``name``."""
    return importlib.import_module("impl_torch").optimizer_class(name)


def jax_factory(name: str):
    """impl_jax's optax factory for the rule ``name`` (``impl_jax.rmsprop``)."""
    return getattr(importlib.import_module("impl_jax"), name)


def state_class(name: str) -> type:
    """impl_jax's state NamedTuple for the rule ``name`` (``impl_jax.RMSpropState``)."""
    return importlib.import_module("impl_jax._core").SPECS[name].state_cls


def optax_factory(name: str):
    """optax's factory for the rule ``name`` (``optax.rmsprop``)."""
    return getattr(importlib.import_module("optax"), peer_name(name, "optax"))


def keras_class(name: str) -> type:
    """``keras.optimizers``' class for the rule ``name``."""
    return getattr(importlib.import_module("keras.optimizers"), peer_name(name, "keras"))


def sparse_rules() -> list[str]:
    """The registered rules whose impl_torch step takes sparse gradients."""
    updates = importlib.import_module("impl_torch.updates")
    return [name for name in rules.RULES if name in updates.SPARSE_UPDATES]


def dense_only_rules() -> list[str]:
    """The registered rules whose impl_torch step refuses sparse gradients."""
    return [name for name in rules.RULES if name not in sparse_rules()]


def torch_takes(name: str, keyword: str) -> bool:
    """Whether torch.optim's class for the rule ``name`` has the argument ``keyword``
    (``torch_takes("adagrad", "fused")``): read off the installed torch's signature."""
    return keyword in inspect.signature(torch_class(name)).parameters
