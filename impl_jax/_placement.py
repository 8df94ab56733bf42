"""Where a new state array lives: on its parameter's devices, sharded like it (JAX SPMD).

Optimizer state is sharded like its parameter (each device holds and updates the slice of
the moments that matches its slice of the parameter), and the step counter is replicated
over the parameters' mesh, so that a jitted step receives the same shardings it returns
and compiles once.

- Concrete arrays: ``jnp.full_like`` keeps the parameter's sharding.
- Under ``jit`` with an explicit-axes mesh (``jax.sharding.AxisType.Explicit``) the
  tracer's type carries the sharding, and ``jnp.full_like`` keeps it too.
- Under ``jit`` with automatic axes the tracer carries no sharding, and a constant that
  does not depend on the parameter is placed by the compiler alone: replicated, or on one
  device when the parameters are otherwise unused (jit drops unused arguments; optax's
  ``init`` under jit ends there too). ``filled_like`` therefore makes the constant depend
  on the parameter, ``select(isfinite(x), x * 0, 0) + value``, which is ``value`` for every
  ``x`` (``x * 0`` is a signed zero for finite ``x``, and ``-0 + 0 == +0``), so XLA's
  sharding propagation gives it ``x``'s sharding. It costs one pass over the parameter,
  once, at ``init``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec


def filled_like(x, value, dtype=None):
    """An array shaped and sharded like ``x``, of ``dtype`` (``x``'s by default; the real
    counterpart of a complex ``x`` allowed), every element ``value``."""
    if not isinstance(x, jax.core.Tracer):
        return jnp.full_like(x, value, dtype=dtype)
    zero = jnp.where(jnp.isfinite(x), x * 0, jnp.zeros_like(x))
    if dtype is not None and not jnp.issubdtype(dtype, jnp.complexfloating):
        zero = jnp.real(zero)
    zero = zero.astype(zero.dtype if dtype is None else dtype)
    return zero + jnp.asarray(value, dtype=zero.dtype)


def counter_like(params):
    """The int32 step counter 0, replicated over the mesh of ``params``' first leaf when
    that is a ``NamedSharding`` (the placement a jitted step gives it back in), else where
    JAX puts a new scalar."""
    count = jnp.zeros([], jnp.int32)
    for leaf in jax.tree.leaves(params):
        sharding = getattr(leaf, "sharding", None) if not isinstance(leaf, jax.core.Tracer) else None
        if isinstance(sharding, NamedSharding):
            return jax.device_put(count, NamedSharding(sharding.mesh, PartitionSpec()))
        break
    return count
