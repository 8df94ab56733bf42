"""The layout's contracts (DESIGN.md): dependencies flow one way, generic names resolve here."""

from __future__ import annotations

import ast
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN = {
    "adaptbench": {"torch", "jax", "jaxlib", "optax", "impl_torch", "impl_jax", "bench", "datasets", "sklearn"},
    "impl_torch": {"jax", "jaxlib", "optax", "impl_jax", "bench", "datasets"},
    "impl_jax": {"torch", "impl_torch", "bench", "datasets"},
    "datasets": {"torch", "jax", "optax", "impl_torch", "impl_jax", "bench"},
}


def _imported_top_levels(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_flow_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        bad = _imported_top_levels(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("name", ["adaptbench", "impl_torch", "impl_jax", "datasets", "bench", "tests"])
def test_generic_top_level_names_resolve_to_this_checkout(name):
    """`datasets` is also a PyPI package; from the checkout, ours must win (found, not imported:
    impl_jax's import needs JAX, which `make test-torch-latest` does not install)."""
    spec = importlib.util.find_spec(name)
    assert pathlib.Path(spec.origin).resolve().parent == ROOT / name
