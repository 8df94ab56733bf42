"""bench/timing/overhead.py: the call overhead of the fused steps (step time less kernel
time), measured in a process of its own. Signs and existence only: no timing is asserted."""

from __future__ import annotations

import pytest

from bench.timing import cases, overhead

IMPLS = {i.id: i for i in cases.impls()}


def _spec(rule, size, impl, device="cpu"):
    return cases.StepSpec(rule, cases.SIZE_BY_ID[size], "fp32", device, IMPLS[impl])


def test_applies_to_the_fused_cpu_steps_at_the_measured_sizes():
    assert overhead.applies(_spec("adagrad", "iris15", "ours-torch-fused"))
    assert overhead.applies(_spec("rmsprop", "1e7", "ours-torch-auto"))
    assert overhead.applies(_spec("adagrad", "1e3", "torch.optim-fused"))
    assert not overhead.applies(_spec("adagrad", "tfm100", "ours-torch-fused"))
    assert not overhead.applies(_spec("adagrad", "1e3", "ours-torch-fused", device="cuda"))
    assert not overhead.applies(_spec("adagrad", "1e3", "ours-torch-loop"))
    assert not overhead.applies(_spec("adagrad", "1e3", "ours-jax-step"))


def test_measure_finds_the_native_fused_kernel_in_process():
    """torch.optim's fused Adagrad: one aten::_fused_adagrad_ per step (nothing to compile)."""
    import torch

    p = torch.nn.Parameter(torch.randn(1000))
    p.grad = torch.randn(1000)
    opt = torch.optim.Adagrad([p], fused=True)
    opt.step()
    result = overhead.measure(opt.step, overhead.KERNELS["torch.optim-fused"])
    assert result["kernel_calls"] == 1 and result["kernel_s"] > 0 and result["step_s"] > 0
    assert result["overhead_s"] == pytest.approx(result["step_s"] - result["kernel_s"])
    none = overhead.measure(opt.step, lambda name: False)
    assert none["kernel_calls"] == 0 and none["kernel_s"] == 0


@pytest.fixture
def worker(monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_THREADS", "1")
    w = overhead.Worker()
    monkeypatch.setattr(overhead, "_worker", w)
    yield w
    w.close()


def test_a_small_fused_adagrad_step_has_a_kernel_and_an_overhead(worker):
    info = overhead.for_case(_spec("adagrad", "1e3", "ours-torch-fused"))
    assert info["kernel_calls"] == 1  # one tensor: one Inductor kernel per step
    assert info["kernel_s"] > 0 and info["overhead_step_s"] > 0
    assert info["overhead_s"] == pytest.approx(info["overhead_step_s"] - info["kernel_s"])
    # the step contains its kernel: its median is not below the kernel's by more than noise
    assert info["overhead_s"] > -info["kernel_s"]
    assert "Inductor C++ kernels" in info["overhead_source"] and "overhead_error" not in info
    # the same process serves the next case; auto runs no compiled kernel at 1e3 elements
    auto = overhead.for_case(_spec("adagrad", "1e3", "ours-torch-auto"))
    assert set(auto) == {"overhead_source"} and "no kernel ran" in auto["overhead_source"]
    peer = overhead.for_case(_spec("adagrad", "1e3", "torch.optim-fused"))
    assert peer["kernel_calls"] == 1 and peer["kernel_s"] > 0 and "aten::_fused_" in peer["overhead_source"]
    # torch.optim.RMSprop has no fused=True: skipped as in the sweep, not an error
    unsupported = overhead.for_case(_spec("rmsprop", "1e3", "torch.optim-fused"))
    assert set(unsupported) == {"overhead_source"} and "unsupported" in unsupported["overhead_source"]


def test_a_failed_measurement_is_an_error_not_a_number(worker):
    bogus = cases.StepSpec("adagrad", cases.SIZE_BY_ID["1e3"], "fp32", "cpu",
                           cases.Impl("nonesuch", "torch", "ours", "x", ""))
    answer = worker.request(bogus)
    assert set(answer) == {"error"} and "KeyError" in answer["error"]
    worker._proc.kill()
    worker._proc.wait()
    gone = worker.request(_spec("adagrad", "1e3", "ours-torch-fused"))
    assert "error" in gone
    again = worker.request(_spec("adagrad", "1e3", "ours-torch-fused"))
    assert again["error"].startswith("the measuring process failed earlier")
