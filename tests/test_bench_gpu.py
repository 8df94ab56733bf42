"""``make bench-gpu`` (``python -m bench gpu``) without a usable GPU stops at once, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

import jax  # noqa: E402
import torch  # noqa: E402

from bench.timing import gpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_fails_at_once_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench", "gpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no CUDA run possible here" in done.stderr and "sees no CUDA device" in done.stderr
    assert "pytest" not in done.stdout  # neither the tests nor the sweep started


def test_names_jax_when_only_torch_sees_the_gpu(monkeypatch):
    def no_gpu(platform=None):
        raise RuntimeError("Unknown backend: 'gpu' requested")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(jax, "devices", no_gpu)
    problem = gpu.cuda_problem()
    assert problem is not None and "jax sees no GPU" in problem and "jax[cuda12]" in problem


def test_no_problem_when_both_see_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(jax, "devices", lambda platform=None: ["gpu:0"])
    assert gpu.cuda_problem() is None
