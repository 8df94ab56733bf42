"""Every repository path the code and docs name exists.

A module docstring, comment, error message or doc page that says ``bench/timing/x.py`` or
``docs/y.md`` sends a reader there; after files move, a stale name is a dead end. Paths
with a placeholder (``results/<machine>/``, ``tests/test_rule_*.py``) are patterns, not
files, and are left out.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP = ("bench", "adaptbench", "impl_torch", "impl_jax", "datasets", "tests", "docs", "results", ".ci")
NAMED = re.compile(r"(?<![\w/.-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./<>*{}\[\]-]*)")
PLACEHOLDER = re.compile(r"[<>*{}\[\]]")
# Every file that may send a reader somewhere, but this one (its examples are made up).
SOURCES = sorted({*(p for top in TOP[:7] for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md")),
                  ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / ".ci" / "run"}
                 - {pathlib.Path(__file__).resolve()})


def named_paths(text: str) -> set[str]:
    """The repository paths ``text`` names, without trailing punctuation or placeholders."""
    found = set()
    for m in NAMED.finditer(text):
        path = m.group(1).rstrip(".-")
        if not PLACEHOLDER.search(path) and not text[m.end():m.end() + 1] in ("<", "*", "{"):
            found.add(path)
    return found


def test_the_pattern_finds_paths_and_skips_placeholders():
    text = ("see bench/timing/run.py. and docs/performance.md, results/<machine>/quick/, "
            "results/gpu-<name>/, tests/test_rule_*.py")
    assert named_paths(text) == {"bench/timing/run.py", "docs/performance.md"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_path_exists(source):
    missing = sorted(p for p in named_paths(source.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{source.relative_to(ROOT)} names paths that do not exist: {missing}"
