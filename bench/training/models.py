"""The experiment's two models, and their initial weights drawn once in NumPy.

- ``linear``: the tutorial's softmax regression, ``logits = X @ W + b`` with
  ``W ~ N(0, 0.01²)`` (std 0.01) and ``b = 0``, trained with cross-entropy.
- ``mlp``: the tutorial's two-layer feed-forward network, Linear–Sigmoid–Linear,
  ``logits = sigmoid(X @ W1 + b1) @ W2 + b2``. Its layers are drawn as ``torch.nn.Linear``
  draws them by default, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases
  (a hidden layer started at std 0.01 barely trains with the SGD baselines).

Weights are stored ``(in, out)`` in both frameworks, so the very same arrays are copied
into PyTorch and JAX and the runs start from identical points. Parameter order (the
order optimizers see them): ``PARAM_NAMES[model]``.
"""

from __future__ import annotations

import numpy as np

MODELS: tuple[str, ...] = ("linear", "mlp")
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "linear": ("W", "b"),
    "mlp": ("W1", "b1", "W2", "b2"),
}
DEFAULT_HIDDEN = 16
LINEAR_INIT_STD = 0.01


def check_model(model) -> str:
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return model


def init_params(
    model: str,
    n_features: int,
    n_classes: int,
    *,
    hidden: int = DEFAULT_HIDDEN,
    seed: int = 0,
    dtype=np.float32,
) -> dict[str, np.ndarray]:
    """Initial parameters as a dict of NumPy arrays (in ``PARAM_NAMES`` order)."""
    check_model(model)
    for name, value in (("n_features", n_features), ("n_classes", n_classes), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    rng = np.random.default_rng(seed)
    if model == "linear":
        params = {
            "W": rng.normal(0.0, LINEAR_INIT_STD, size=(n_features, n_classes)),
            "b": np.zeros(n_classes),
        }
    else:
        def uniform(fan_in, shape):
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, size=shape)

        params = {
            "W1": uniform(n_features, (n_features, hidden)),
            "b1": uniform(n_features, (hidden,)),
            "W2": uniform(hidden, (hidden, n_classes)),
            "b2": uniform(hidden, (n_classes,)),
        }
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}
