"""Every Python block of the README runs on its own, as a reader would paste it.

Library examples run from a directory outside the checkout (the editable install makes
``impl_torch``/``impl_jax``/``adaptbench`` importable anywhere); harness examples, which
import ``bench``/``datasets``, run from the repository root as the README says.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.readme_blocks import ROOT, python_blocks

BLOCKS = python_blocks()


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs_alone(block, tmp_path):
    block.skip_unless_installed()
    cwd = ROOT if block.needs_checkout else tmp_path
    proc = subprocess.run([sys.executable, "-c", block.code], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"README line {block.line}:\n{proc.stderr[-3000:]}"
