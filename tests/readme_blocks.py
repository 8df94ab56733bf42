"""The README's Python code blocks, for the tests that run each one on its own."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# imported from the checkout only: never part of the installed distribution
HARNESS = {"bench", "datasets", "tests"}
LIBRARY = {"adaptbench", "impl_torch", "impl_jax"}


@dataclasses.dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    heading: str
    code: str

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{slug}"

    @property
    def imports(self) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(self.code)):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        return names

    @property
    def needs_checkout(self) -> bool:
        return bool(self.imports & HARNESS)

    def skip_unless_installed(self) -> None:
        """Skip where a third-party package the block imports is missing (`make
        test-torch-latest` has no JAX); our own packages must always import."""
        for name in sorted(self.imports - HARNESS - LIBRARY - set(sys.stdlib_module_names)):
            pytest.importorskip(name)


def python_blocks(text: str | None = None) -> list[Block]:
    """Every fenced ```python block, with the nearest heading above it."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```python":
            start = i
            i += 1
            body = []
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append(Block(start + 1, heading, "\n".join(body) + "\n"))
        i += 1
    return blocks
