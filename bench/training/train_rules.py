"""The update rules the training experiment compares, built for either framework.

- every registered rule (``rules.RULES``): this project's implementations with the
  tutorial's hyperparameters, ``rules.preset(rule, "seed")`` (the rule's ``PRESETS["seed"]``):
  ``impl_torch.optimizer_for`` in PyTorch, ``impl_jax.transformation`` in JAX.
- ``momentum`` (lr 0.1, heavy-ball momentum 0.9) as a baseline, unless a rule of that name
  is registered: ``torch.optim.SGD`` and ``optax.sgd``, which compute the same update
  (``b <- m*b + g``, ``p <- p - lr*b``, first ``b = g``). Plain SGD is the registered
  ``sgd`` rule (its ``seed`` preset: lr 0.1).

``lr`` overrides a rule's learning rate.
"""

from __future__ import annotations

from adaptbench import rules

BASELINES: dict[str, dict] = {
    "momentum": dict(lr=0.1, momentum=0.9),
}


def names() -> tuple[str, ...]:
    """The registered rules (read when called: a user's module may register more), then the
    baselines."""
    return tuple(rules.RULES) + tuple(b for b in BASELINES if b not in rules.RULES)


def check_rule(rule) -> str:
    if rule not in names():
        raise ValueError(f"rule must be one of {names()}, got {rule!r}")
    return rule


def _check_lr(lr):
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ValueError(f"lr must be a positive number or None, got {lr!r}")
    return lr


def spec(rule: str, lr: float | None = None):
    """A ``rules`` object (adaptive rules) or the SGD hyperparameters dict (baselines).

    Hashable and comparable, so it can key caches.
    """
    check_rule(rule)
    _check_lr(lr)
    over = {} if lr is None else {"lr": float(lr)}
    if rule in rules.RULES:
        return rules.preset(rule, "seed", **over)
    return tuple(sorted({**BASELINES[rule], **over}.items()))


def describe(rule: str, lr: float | None = None) -> str:
    """One line for the results: the hyperparameters and which code ran."""
    s = spec(rule, lr)
    if rule in rules.RULES:
        seed = type(s).PRESETS.get("seed", {})
        fields = {k: v for k, v in s.as_dict().items() if k in seed}
        return (
            f"`rules.preset({rule!r}, 'seed')` {fields}: "
            "`impl_torch.optimizer_for` / `impl_jax.transformation`"
        )
    d = dict(s)
    return f"lr {d['lr']}, momentum {d['momentum']}: `torch.optim.SGD` / `optax.sgd`"


def torch_optimizer(rule: str, params, lr: float | None = None, impl: str | None = None):
    """A ``torch.optim.Optimizer`` over ``params`` (``impl`` picks ours; the baselines ignore it)."""
    s = spec(rule, lr)
    if rule in rules.RULES:
        import impl_torch

        return impl_torch.optimizer_for(s, params, impl=impl)
    import torch

    d = dict(s)
    return torch.optim.SGD(params, lr=d["lr"], momentum=d["momentum"])


def jax_transformation(rule: str, lr: float | None = None):
    """An ``optax.GradientTransformation`` whose updates are added to the parameters."""
    s = spec(rule, lr)
    if rule in rules.RULES:
        import impl_jax

        return impl_jax.transformation(s)
    import optax

    d = dict(s)
    return optax.sgd(d["lr"], momentum=d["momentum"] or None)
