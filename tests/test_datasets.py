"""datasets/: the loader's contract (splits, scaling fitted on train, seeds, dtypes, errors)."""

from __future__ import annotations

import ast
import pathlib
import socket

import numpy as np
import pytest

import datasets
from datasets import synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_datasets_is_this_repository_not_the_pypi_package():
    assert pathlib.Path(datasets.__file__).resolve() == ROOT / "datasets" / "__init__.py"


def test_names():
    assert datasets.NAMES == ("iris", "wine", "breast_cancer", "digits", "sparse")


EXPECTED = {  # name: (n_samples, n_features, n_classes)
    "iris": (150, 4, 3),
    "wine": (178, 13, 3),
    "breast_cancer": (569, 30, 2),
    "digits": (1797, 64, 10),
    "sparse": (2000, 100, 4),
}


@pytest.mark.parametrize("name", datasets.NAMES)
def test_shapes_split_and_labels(name):
    n, d, k = EXPECTED[name]
    s = datasets.load(name)
    assert s.name == name and s.n_classes == k and s.n_features == d and s.seed == 0
    assert sum(s.sizes) == n
    assert s.sizes == datasets.split_sizes(n)
    for X, y in (s.train, s.dev, s.test):
        assert X.dtype == np.float32 and X.ndim == 2 and X.shape[1] == d
        assert y.dtype == np.int64 and y.shape == (X.shape[0],)
        assert X.flags.c_contiguous and X.flags.writeable
        assert y.min() >= 0 and y.max() < k
        assert np.all(np.isfinite(X))
    assert set(np.unique(s.train[1])) == set(range(k)), "every class appears in train"


def test_iris_is_the_tutorials_120_15_15():
    assert datasets.load("iris").sizes == (120, 15, 15)


@pytest.mark.parametrize("name", datasets.NAMES)
def test_minmax_fitted_on_train_only(name):
    s = datasets.load(name, dtype=np.float64)
    Xtr = s.train[0]
    X_raw, y_raw = datasets.raw(name)
    order = np.random.default_rng(0).permutation(len(y_raw))
    n_train, n_dev, _ = s.sizes
    raw_train = X_raw[order][:n_train]
    lo = raw_train.min(axis=0)
    span = raw_train.max(axis=0) - lo
    varying = span > 0
    # Train: exactly [0, 1] per varying column; constant columns shifted to 0.
    np.testing.assert_allclose(Xtr.min(axis=0), 0.0, atol=0)
    np.testing.assert_allclose(Xtr.max(axis=0)[varying], 1.0, rtol=1e-15)
    assert np.all(Xtr[:, ~varying] == 0.0)
    # Dev/test: the train map applied, not their own min/max.
    raw_test = X_raw[order][n_train + n_dev:]
    expected = (raw_test - lo) / np.where(varying, span, 1.0)
    np.testing.assert_allclose(s.test[0], expected, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(s.test[1], y_raw[order][n_train + n_dev:])


def test_dev_and_test_may_leave_the_unit_interval():
    """The statement in the docstring: wine's dev/test fall outside [0, 1] with train's map."""
    s = datasets.load("wine")
    outside = [(X.min() < 0) or (X.max() > 1) for X in (s.dev[0], s.test[0])]
    assert any(outside)


@pytest.mark.parametrize("name", datasets.NAMES)
def test_seeded_and_deterministic(name):
    a, b, c = datasets.load(name, seed=3), datasets.load(name, seed=3), datasets.load(name, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train[1], c.train[1]) or not np.array_equal(a.train[0], c.train[0])
    # The split partitions the data set: every sample exactly once.
    X, _ = datasets.raw(name)
    assert sum(a.sizes) == len(X)


def test_float64_and_float32_are_the_same_numbers():
    s32 = datasets.load("digits", dtype="float32")
    s64 = datasets.load("digits", dtype=np.float64)
    assert s64.dtype == np.float64 and s32.dtype == np.float32
    np.testing.assert_array_equal(s32.train[0], s64.train[0].astype(np.float32))
    np.testing.assert_array_equal(s32.train[1], s64.train[1])


def test_results_are_independent_copies():
    a = datasets.load("iris")
    a.train[0][:] = -1.0
    b = datasets.load("iris")
    assert b.train[0].min() == 0.0
    X, _ = datasets.raw("iris")
    X[:] = 0
    assert datasets.raw("iris")[0].max() > 0


def test_unpacks_in_order():
    s = datasets.load("iris")
    Xtr, ytr, Xdev, ydev, Xte, yte = s
    assert Xtr is s.train[0] and ydev is s.dev[1] and Xte is s.test[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="mnist"), "unknown data set 'mnist'"),
        (dict(name="Iris"), "unknown data set"),
        (dict(name=None), "unknown data set"),
        (dict(name="iris", seed=-1), "seed"),
        (dict(name="iris", seed=1.5), "seed"),
        (dict(name="iris", seed=True), "seed"),
        (dict(name="iris", seed="0"), "seed"),
        (dict(name="iris", dtype=np.int32), "dtype"),
        (dict(name="iris", dtype="float16"), "dtype"),
        (dict(name="iris", dtype="nonsense"), "dtype"),
        (dict(name="iris", dtype=object()), "dtype"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load(**kwargs)


def test_raw_rejects_unknown_names():
    with pytest.raises(ValueError, match="known: iris"):
        datasets.raw("fashion_mnist")


def test_no_network(monkeypatch):
    """Every data set loads with sockets disabled (sklearn's load_* read package files)."""
    def refuse(*args, **kwargs):
        raise AssertionError("datasets tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    datasets._raw.cache_clear()
    try:
        for name in datasets.NAMES:
            datasets.load(name)
    finally:
        datasets._raw.cache_clear()


def test_sources_never_call_fetchers():
    """No name, attribute or string (e.g. for getattr) refers to sklearn's ``fetch_*`` downloaders."""
    for path in (ROOT / "datasets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            ident = (
                node.id if isinstance(node, ast.Name)
                else node.attr if isinstance(node, ast.Attribute)
                else node.name if isinstance(node, ast.alias)
                else node.value if isinstance(node, ast.Constant) and isinstance(node.value, str)
                else ""
            )
            assert not ident.startswith("fetch_"), f"{path.name}: {ident}"


def test_sparse_set_has_rare_informative_features():
    X, y = datasets.raw("sparse")
    n_common = 20
    freq = X.mean(axis=0)
    assert np.all(freq[:n_common] > 0.15) and np.all(freq[n_common:] < 0.05)
    assert set(np.unique(X)) <= {0.0, 1.0}
    # Each rare feature, when on, points at one class far more often than chance.
    purity = []
    for j in range(n_common, X.shape[1]):
        on = X[:, j] == 1
        if on.sum() >= 10:
            purity.append(np.bincount(y[on], minlength=4).max() / on.sum())
    assert len(purity) > 20 and np.median(purity) > 0.6


def test_make_sparse_is_seeded_and_validates():
    a = synthetic.make_sparse(n_samples=50, seed=1)
    b = synthetic.make_sparse(n_samples=50, seed=1)
    c = synthetic.make_sparse(n_samples=50, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="n_classes"):
        synthetic.make_sparse(n_classes=1)
    with pytest.raises(ValueError, match="n_samples"):
        synthetic.make_sparse(n_samples=0)
    with pytest.raises(ValueError, match="noise"):
        synthetic.make_sparse(noise=-1.0)
