"""The peers' settings for a rule: what torch.optim, optax and Keras are given to compute
the same update class. Shared by the step benchmark (``bench/timing/``) and the training
experiment (``bench/training/``); each rule's ``PEERS`` (``adaptbench/rules/``) holds the
mapping, this module only applies it.
"""

from __future__ import annotations

# Fields that move a constant, not a memory access or an operation (optax and Keras put eps
# inside the root, torch.optim outside): a peer that fixes one to another value is timed at
# its own value, the same update class at the same cost.
SAME_COST = ("eps_in_sqrt",)


def peer_settings(rule, peer: str) -> tuple[str, dict]:
    """(``PEERS[peer]``'s class or factory name, its keywords) for ``rule``, at the peer's own
    value of a ``SAME_COST`` field; ``ValueError`` when the peer has no setting for it."""
    spec = rule.PEERS.get(peer)
    closest = rule.replace(**{f: v for f, v in (spec.fixed if spec else {}).items() if f in SAME_COST})
    kwargs = closest.peer_kwargs(peer)
    return spec.name, kwargs


def has_peer(rule, peer: str) -> bool:
    try:
        peer_settings(rule, peer)
    except ValueError:
        return False
    return True


def off_as_none(factory, kwargs: dict) -> dict:
    """``kwargs`` with a 0 given as None where ``factory``'s own default is None: there None
    leaves a term out and 0 still computes it (optax's momentum trace, Keras's weight decay)."""
    import inspect

    params = inspect.signature(factory).parameters
    return {k: None if v == 0 and not isinstance(v, bool) and k in params and params[k].default is None else v
            for k, v in kwargs.items()}


def optax_peer(rule):
    """(the optax transformation computing ``rule``'s update class, its settings);
    ``ValueError`` when optax has no setting for ``rule``."""
    import optax

    name, kwargs = peer_settings(rule, "optax")
    factory = getattr(optax, name)
    kwargs = off_as_none(factory, kwargs)
    return factory(**kwargs), {"factory": f"optax.{name}", **kwargs}
