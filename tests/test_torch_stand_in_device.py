"""Every rule x impl x structural option x layout stepped on the stand-in device.

``impl_torch.testing.stand_in_device()``: ``meta`` tensors apply CUDA's device rule (a CPU
tensor joins their math only as a 0-dim scalar), and the fused graphs are traced as
Inductor would receive them, with a backend that generates no code. A step that mixes a
CPU tensor into device math raises here as it would on a GPU. Two steps each; after them
every state tensor must live with its parameter (the ``"step"`` counters on the CPU, as
torch.optim keeps them when not capturable) and count 2, and the plan must be the one
asked for (``"auto"`` with its thresholds lowered must fuse, not fall back).

The options are read off each rule's dataclass (``tests/rule_options.py``), so a rule
added to the registry is covered without an edit here.
"""

from __future__ import annotations

import logging

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import fused, ops, testing
from tests.rule_options import option_params

pytestmark = pytest.mark.skipif(
    fused.unavailable_reason() is not None, reason=f"torch.compile unavailable: {fused.unavailable_reason()}"
)

IMPLS = ("loop", "foreach", "fused", "auto")
LAYOUTS = ("one", "many", "rows", "noncontiguous")
# The layouts select the compiled graphs (one tensor, a list as one graph, rows views, a
# strided tensor under Dynamo's guards): every one for the fusing impls; the eager impls
# step any layout with the same kernels, so a list is enough for them.
IMPL_LAYOUTS = [(impl, layout) for impl in IMPLS for layout in LAYOUTS if impl in ("fused", "auto") or layout == "many"]


def _params(layout: str, device) -> list[torch.nn.Parameter]:
    if layout == "one":
        shapes = [(100,)]
    elif layout == "many":  # fused: one graph for the list (4 to 128 tensors), a 0-dim one among them
        shapes = [(100,), (16, 9), (), (33,), (7, 2)]
    elif layout == "rows":  # fused: (n // 64, 64) views
        shapes = [(1 << 16,)]
    else:
        return [torch.nn.Parameter(torch.empty(6, 8, device=device).t())]
    return [torch.nn.Parameter(torch.empty(s, device=device)) for s in shapes]


def _grad(p: torch.Tensor) -> torch.Tensor:
    # the same strides as the parameter: a transposed gradient for a transposed parameter
    return torch.empty_strided(p.shape, p.stride(), device=p.device, dtype=p.dtype)


@pytest.mark.parametrize("impl, layout", IMPL_LAYOUTS)
@pytest.mark.parametrize("name, overrides", option_params())
def test_two_steps_on_the_stand_in_device(name, overrides, impl, layout, caplog):
    rule = rules.preset(name, "torch", **overrides)
    with testing.stand_in_device() as device, testing.auto_fuses_every_group():
        params = _params(layout, device)
        opt = impl_torch.optimizer_for(rule, params, impl=impl)
        with caplog.at_level(logging.WARNING, logger="impl_torch"):
            for _ in range(2):
                for p in params:
                    p.grad = _grad(p)
                opt.step()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    expected = {"auto": "fused"}.get(impl, impl)
    assert opt.step_plan() == [[(expected, len(params))]]
    for p in params:
        state = opt.state.get(p, {})
        assert set(state) == set(impl_torch.functional.state_keys(rule))
        if rule.STEP_IN_STATE:
            assert state["step"].device.type == "cpu" and state["step"].item() == 2.0
        for n in rule.state_names:
            assert state[n].device == device and state[n].shape == p.shape, n
        assert p.device == device


def test_outside_the_block_the_fused_impl_refuses_meta():
    p = torch.nn.Parameter(torch.empty(10, device="meta"))
    p.grad = torch.empty_like(p)
    opt = impl_torch.Adagrad([p], impl="fused")
    with pytest.raises(RuntimeError, match="is on meta"):
        opt.step()
    with testing.stand_in_device():
        assert fused.supports_device(torch.device("meta"))
    assert not fused.supports_device(torch.device("meta"))


def test_a_cpu_tensor_in_device_math_is_caught(monkeypatch):
    """The stand-in finds the fault it exists for: RMSprop's ``bias_correction`` divided the
    device tensors by ``1 - alpha**t`` computed from the 1-element CPU step view (the
    division before the fix, put back for this test)."""
    monkeypatch.setattr(fused._CompiledOps, "div", staticmethod(ops.TensorOps.div))
    monkeypatch.setattr(fused, "_COMPILED", {})
    monkeypatch.setattr(fused, "_FAILED", {})
    with testing.stand_in_device() as device:
        p = torch.nn.Parameter(torch.empty(100, device=device))
        opt = impl_torch.RMSprop([p], bias_correction=True, impl="fused")
        p.grad = torch.empty_like(p)
        with pytest.raises(fused.CompileFailed, match="not on the expected device"):
            opt.step()
        assert opt.state[p]["step"].item() == 0.0  # nothing stepped


def test_a_failed_kernel_falls_back_for_that_kernel_only(monkeypatch, caplog):
    """A compile that fails at step time under ``"auto"`` (the fault above, on the stand-in)
    sends that optimizer's group eagerly, with one WARNING naming the kernel; a second
    optimizer needing the same kernel falls back without compiling it again, and other
    rules keep fusing in the same process."""
    monkeypatch.setattr(fused._CompiledOps, "div", staticmethod(ops.TensorOps.div))
    monkeypatch.setattr(fused, "_COMPILED", {})
    monkeypatch.setattr(fused, "_FAILED", {})
    monkeypatch.setattr(impl_torch.functional, "_WARNED", set())
    with testing.stand_in_device() as device, testing.auto_fuses_every_group():
        def stepped(make):
            p = torch.nn.Parameter(torch.empty(100, device=device))
            opt = make([p])
            for _ in range(2):
                p.grad = torch.empty_like(p)
                opt.step()
            assert opt.state[p]["step"].item() == 2.0
            return opt

        with caplog.at_level(logging.WARNING, logger="impl_torch"):
            first = stepped(lambda ps: impl_torch.RMSprop(ps, bias_correction=True))
            compiled = fused.compiled_count()
            second = stepped(lambda ps: impl_torch.RMSprop(ps, bias_correction=True))
            other = stepped(lambda ps: impl_torch.Adagrad(ps))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rmsprop step (bias_correction" in warnings[0], warnings
    assert first.step_plan() == second.step_plan() == [[("eager after a failed compile", 1)]]
    assert other.step_plan() == [[("fused", 1)]]
    assert fused.compiled_count() == compiled + 1  # Adagrad's kernel only
