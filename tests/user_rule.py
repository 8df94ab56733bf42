"""A rule defined outside the library and registered from here, as a user registers their own
(docs/adding-a-rule.md): sign descent with momentum, one state tensor.

``pytest --rules-module tests.user_rule`` (and ``python -m bench run --rules-module
tests.user_rule``) loads it before collection, so every suite that iterates
``rules.RULES`` runs it; ``tests/test_user_rule.py`` checks that they do.

Formula (signum, Bernstein, Wang, Azizzadenesheli & Anandkumar 2018, "signSGD: Compressed
Optimisation for Non-Convex Problems", with torch.optim's prologue)::

    g <- -g                                if maximize
    g <- g + weight_decay * p              (or, decoupled, p <- p - lr*weight_decay*p)
    m <- beta * m + (1 - beta) * g         (state "exp_avg")
    p <- p - lr * sign(m)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from adaptbench import rules
from adaptbench.rules.base import check_unit_interval


@rules.register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SignDescent(rules.Rule):
    """Sign descent with momentum: ``m <- beta*m + (1-beta)*g; p <- p - lr*sign(m)``."""

    name: ClassVar[str] = "signdescent"
    STATE: ClassVar[tuple[str, ...]] = ("exp_avg",)
    PRESETS: ClassVar[dict] = {"seed": {"lr": 0.02}, "torch": {}, "optax": {"complex_as_real": False}}
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ("lr", "beta", "weight_decay", "foreach")

    lr: float = 1e-3
    beta: float = 0.9

    def check(self) -> None:
        check_unit_interval("beta", self.beta)

    def reference_update(self, p, g, state, new, decay):
        m = self.beta * state["exp_avg"] + (1.0 - self.beta) * g
        new["exp_avg"] = m
        return decay(p, self.lr) - self.lr * np.sign(m)


def torch_update(ops, rule, params, grads, state) -> None:
    """The PyTorch math, once, for every impl (``impl_torch.ops``)."""
    from impl_torch.prologue import decay_params_, effective_grads

    grads, _ = effective_grads(ops, rule, params, grads, state["step"])
    exp_avgs = state["exp_avg"]
    ops.mul_(exp_avgs, rule.beta)
    ops.add_(exp_avgs, grads, alpha=1 - rule.beta)
    decay_params_(ops, rule, params, ops.scalar_map(lambda _: -rule.lr, state["step"]))
    ops.add_(params, ops.sign(exp_avgs), alpha=-rule.lr)


def jax_leaf(P, rule, p, g, exp_avg, lr):
    """The JAX math of one leaf: ``(delta, new_exp_avg)``."""
    import jax.numpy as jnp

    from impl_jax import _core

    g = _core.prepare_grad(P, rule, p, g)
    # one rounding for (1 - beta) * g + m, as torch's add_(g, alpha=1 - beta)
    m = P.rnd(P.rnd(P.up(exp_avg) * P.scalar(rule.beta)) + g * P.stored(1 - rule.beta))
    return P.stored(-lr) * jnp.sign(m), P.store(m)


def _register_frameworks() -> None:
    # Each framework's math where that framework is installed (impl_torch works without
    # JAX and impl_jax without torch).
    try:
        import impl_torch
    except ImportError:
        pass
    else:
        impl_torch.register_rule("signdescent", torch_update)
    try:
        import impl_jax
    except ImportError:
        pass
    else:
        impl_jax.register_rule("signdescent", jax_leaf)


_register_frameworks()
