"""adaptbench: Adagrad, Adadelta and RMSprop written once, in PyTorch and JAX.

The installed distribution holds three import packages:

- ``adaptbench.rules``: the specification (hyperparameters, conventions, the float64
  NumPy oracle, tolerances); NumPy only. ``from adaptbench import rules``.
- ``impl_torch``: the PyTorch optimizers (``pip install adaptbench[torch]``).
- ``impl_jax``: the JAX/optax transformations (``pip install adaptbench[jax]``).

Nothing here imports torch or JAX.
"""
