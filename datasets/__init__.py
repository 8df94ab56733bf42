"""The data the training experiments run on, as NumPy arrays; no network access, ever.

``load(name, seed=0, dtype=np.float32) -> Split`` for every name in ``NAMES``:

- ``iris``, ``wine``, ``breast_cancer``, ``digits``: the data sets scikit-learn ships
  inside its package (``sklearn.datasets.load_*`` read files installed with
  scikit-learn; the ``fetch_*`` downloaders are never used).
- ``sparse``: a synthetic classification set with rare, informative binary features
  (see ``datasets.synthetic``), the case Adagrad's per-coordinate rates were made for.

Every data set is prepared the way the tutorial prepared Iris:

1. shuffle the samples with ``np.random.default_rng(seed).permutation``;
2. split 80 % / 10 % / 10 % into train / dev / test (dev and test get
   ``round(0.1 * n)`` samples each, train the rest: Iris gives 120 / 15 / 15);
3. min–max scale every feature to [0, 1] with the minimum and maximum of the *train*
   split only, then apply that same map to dev and test (so their values may fall
   slightly outside [0, 1]; no information leaks from dev/test into training). A feature
   that is constant on train is shifted by its minimum and not scaled.

Features come back in ``dtype`` (float32 or float64), labels as int64 in
``range(n_classes)``. The same arrays feed the PyTorch and the JAX runs.

This package shares its name with the PyPI package ``datasets``; the project runs from
its checkout, where this directory comes first on ``sys.path`` (tests check
``datasets.__file__``).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers

import numpy as np

from .synthetic import SPARSE_DATA_SEED, make_sparse

NAMES: tuple[str, ...] = ("iris", "wine", "breast_cancer", "digits", "sparse")
DTYPES: tuple[str, ...] = ("float32", "float64")
DEV_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Split:
    """One prepared data set: ``(X, y)`` pairs for train, dev and test."""

    train: tuple[np.ndarray, np.ndarray]
    dev: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    n_classes: int
    name: str
    seed: int = 0

    @property
    def n_features(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.train[0].dtype

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_dev, n_test)``."""
        return tuple(len(part[1]) for part in (self.train, self.dev, self.test))

    def __iter__(self):
        """``X_train, y_train, X_dev, y_dev, X_test, y_test`` for unpacking."""
        return iter((*self.train, *self.dev, *self.test))


def _sklearn(loader_name: str):
    def raw() -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)()  # reads files inside the package
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)

    return raw


_RAW = {
    "iris": _sklearn("load_iris"),
    "wine": _sklearn("load_wine"),
    "breast_cancer": _sklearn("load_breast_cancer"),
    "digits": _sklearn("load_digits"),
    "sparse": lambda: make_sparse(seed=SPARSE_DATA_SEED),
}
assert tuple(_RAW) == NAMES


@functools.lru_cache(maxsize=None)
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    X, y = _RAW[name]()
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The unshuffled, unscaled ``(X float64, y int64)`` of a data set (copies)."""
    _check_name(name)
    X, y = _raw(name)
    return X.copy(), y.copy()


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    return name


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dt


def split_sizes(n: int) -> tuple[int, int, int]:
    """``(n_train, n_dev, n_test)`` for ``n`` samples: dev and test ``round(0.1 n)`` each."""
    n_dev = int(round(DEV_FRACTION * n))
    n_test = int(round(TEST_FRACTION * n))
    return n - n_dev - n_test, n_dev, n_test


def minmax_fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, scale)`` such that ``(X - lo) / scale`` maps each column of ``X`` onto [0, 1].

    Columns constant on ``X`` get scale 1 (shifted to 0, not blown up).
    """
    lo = X.min(axis=0)
    span = X.max(axis=0) - lo
    return lo, np.where(span > 0, span, 1.0)


def load(name: str, seed: int = 0, dtype=np.float32) -> Split:
    """Shuffle (seeded), split 80/10/10 and min–max scale (fitted on train) one data set."""
    name = _check_name(name)
    seed = _check_seed(seed)
    dt = _check_dtype(dtype)
    X, y = _raw(name)
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    n_train, n_dev, _ = split_sizes(len(y))
    parts = {
        "train": slice(0, n_train),
        "dev": slice(n_train, n_train + n_dev),
        "test": slice(n_train + n_dev, len(y)),
    }
    lo, scale = minmax_fit(X[parts["train"]])
    out = {}
    for part, sl in parts.items():
        Xp = np.ascontiguousarray(((X[sl] - lo) / scale).astype(dt))
        yp = np.ascontiguousarray(y[sl], dtype=np.int64)
        out[part] = (Xp, yp)
    return Split(**out, n_classes=int(y.max()) + 1, name=name, seed=seed)


__all__ = ["NAMES", "DTYPES", "Split", "load", "raw", "make_sparse", "minmax_fit", "split_sizes"]
