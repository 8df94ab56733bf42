"""A seeded synthetic classification set with rare, informative features.

Adagrad gives every coordinate its own rate ``lr / sqrt(sum of its squared gradients)``:
a feature that is seldom non-zero accumulates little and keeps a large rate, so the few
samples that carry it move its weights a long way. Plain SGD moves rare and common
coordinates at one rate. This set makes that difference matter:

- ``n_common`` frequent binary features (each on with probability 0.2–0.5) that carry
  weak evidence about the class (weights ~ N(0, 0.3²));
- ``n_rare`` rare binary features (each on with probability 0.3 %–3 %, log-uniform),
  each tied to one class with a strong weight (+3), the rest of its row 0;
- label ``argmax(X @ W + Gumbel noise * noise)`` — a noisy softmax-regression teacher,
  so a linear model can do well, but only by learning the rare features.

About three samples in five carry at least one rare feature. Everything is drawn from
``np.random.default_rng(seed)``; ``datasets.load("sparse")`` uses ``SPARSE_DATA_SEED``
(the data are fixed, like a real data set; ``load``'s own seed shuffles and splits).
"""

from __future__ import annotations

import numpy as np

SPARSE_DATA_SEED = 20240605


def make_sparse(
    n_samples: int = 2000,
    n_common: int = 20,
    n_rare: int = 80,
    n_classes: int = 4,
    noise: float = 0.5,
    seed: int = SPARSE_DATA_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X float64 of 0/1 shaped (n_samples, n_common + n_rare), y int64)``."""
    for name, value, least in (
        ("n_samples", n_samples, 1),
        ("n_common", n_common, 0),
        ("n_rare", n_rare, 0),
        ("n_classes", n_classes, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    if n_common + n_rare < 1:
        raise ValueError("n_common + n_rare must be >= 1")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be a real number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    p_common = rng.uniform(0.2, 0.5, size=n_common)
    p_rare = np.exp(rng.uniform(np.log(0.003), np.log(0.03), size=n_rare))
    p = np.concatenate([p_common, p_rare])
    X = (rng.random((n_samples, p.size)) < p).astype(np.float64)
    W = np.zeros((p.size, n_classes))
    W[:n_common] = rng.normal(0.0, 0.3, size=(n_common, n_classes))
    W[n_common + np.arange(n_rare), rng.integers(0, n_classes, size=n_rare)] = 3.0
    logits = X @ W + noise * rng.gumbel(size=(n_samples, n_classes))
    y = np.argmax(logits, axis=1).astype(np.int64)
    return X, y
