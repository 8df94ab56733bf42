"""The default step (``impl="auto"``) in the places users put it (issue #20's table).

- a small model never compiles, and is bitwise torch.optim;
- a model of many small tensors never compiles, whatever their number;
- a momentum/alpha/eps schedule never recompiles the fused step;
- a loaded checkpoint keeps the impl the optimizer was built with;
- no compiler, a broken one, an unusable cache: ``auto`` steps eagerly with one WARNING
  (subprocesses: the probe runs once per process), ``impl="fused"`` refuses at
  construction, and a compile that fails at step time falls back with nothing applied
  twice;
- threads: several threads stepping their own optimizers, one compiling while another
  steps;
- the frames under a warm ``step()`` are no more than torch.optim's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import functional, fused
from tests.peer_lookup import ours_torch_class, peer_name, rule_names, torch_class

# ids: torch.optim's class names
CLASSES = [pytest.param(name, id=peer_name(name, "torch")) for name in rule_names("torch")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

needs_compile = pytest.mark.skipif(
    fused.unavailable_reason() is not None, reason=f"torch.compile unavailable: {fused.unavailable_reason()}"
)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    # 4-64-64-16-3: 5,571 parameters, the "5.5k-parameter MLP"
    return torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                               torch.nn.Tanh(), torch.nn.Linear(64, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 3))


@pytest.mark.parametrize("name", CLASSES)
def test_small_model_default_is_bitwise_torch_optim_and_never_compiles(name):
    ours, theirs = _mlp(0), _mlp(0)
    assert sum(p.numel() for p in ours.parameters()) == 5571
    opt = ours_torch_class(name)(ours.parameters())
    ref = torch_class(name)(theirs.parameters())
    before = fused._COMPILES[0]
    x = torch.randn(32, 4)
    for _ in range(3):
        for model, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            o.step()
    assert fused._COMPILES[0] == before
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("count, numel", [(10, 512), (200, 512), (10_000, 8)], ids=["10x512", "200x512", "10000x8"])
def test_many_small_tensors_never_compile_by_default(count, numel):
    params = [torch.nn.Parameter(torch.randn(numel)) for _ in range(count)]
    ref = [p.detach().clone().requires_grad_() for p in params]
    for p, q in zip(params, ref):
        p.grad = torch.randn(numel)
        q.grad = p.grad.clone()
    before = fused._COMPILES[0]
    impl_torch.RMSprop(params, momentum=0.9).step()
    torch.optim.RMSprop(ref, momentum=0.9).step()
    assert fused._COMPILES[0] == before
    assert all(torch.equal(p, q) for p, q in zip(params, ref))


def test_auto_compiles_only_the_large_tensors_of_a_large_group(monkeypatch):
    """From ``AUTO_FUSED_MIN_NUMEL`` elements in the group's tensors of at least
    ``AUTO_FUSED_MIN_TENSOR_NUMEL`` each, those go fused; the group's small tensors stay
    eager (loop up to ``AUTO_LOOP_MAX_TENSORS``, foreach above), whatever their number."""
    big, small = functional.AUTO_FUSED_MIN_TENSOR_NUMEL, 100
    monkeypatch.setattr(functional, "AUTO_FUSED_MIN_NUMEL", 2 * big)
    monkeypatch.setattr(fused, "unavailable_reason", lambda: None)
    rule = rules.RMSprop()

    def kinds(params):
        return [(getattr(fn, "__name__", type(fn).__name__), idx)
                for fn, idx in functional._auto_plan(rule, params)]

    assert kinds([torch.zeros(big), torch.zeros(small), torch.zeros(big)]) == [("_AutoFused", [0, 2]), ("_loop", [1])]
    many = [torch.zeros(big)] * 2 + [torch.zeros(small) for _ in range(functional.AUTO_LOOP_MAX_TENSORS + 1)]
    assert [k for k, _ in kinds(many)] == ["_AutoFused", "_foreach"]
    # below the threshold: eager, one part for everything
    assert kinds(many[:1] + many[2:]) == [("_foreach", None)]
    assert kinds(many[:1]) == [("_loop", None)]


@needs_compile
@pytest.mark.parametrize("schedule", ["momentum", "alpha", "eps", "weight_decay", "lr"])
def test_a_schedule_on_any_hyperparameter_compiles_once(schedule):
    """Every numeric hyperparameter is an input of the fused kernel: changing one at every
    step (``OneCycleLR(cycle_momentum=True)``, ``CyclicLR``, a hand-written schedule)
    compiles nothing after the first step, and each step uses the new value."""
    start = {"momentum": 0.9, "alpha": 0.9, "eps": 1e-6, "weight_decay": 1e-3, "lr": 1e-2}
    p = torch.nn.Parameter(torch.randn(1000))
    q = p.detach().clone().requires_grad_()
    opt = impl_torch.RMSprop([p], impl="fused", momentum=0.9, centered=True, weight_decay=1e-3, eps=1e-6)
    ref = impl_torch.RMSprop([q], impl="loop", momentum=0.9, centered=True, weight_decay=1e-3, eps=1e-6)
    compiles = []
    for k in range(8):
        value = start[schedule] * (1 - 0.1 * k)
        for o in (opt, ref):
            o.param_groups[0][schedule] = value
        p.grad = torch.randn(1000)
        q.grad = p.grad.clone()
        before = fused._COMPILES[0]
        opt.step()
        ref.step()
        compiles.append(fused._COMPILES[0] - before)
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1.3e-6, atol=1e-6)
    assert sum(compiles[1:]) == 0, compiles


@needs_compile
def test_one_cycle_with_cycle_momentum_does_not_recompile():
    p = torch.nn.Parameter(torch.randn(4096))
    opt = impl_torch.RMSprop([p], impl="fused", momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=True)
    counts, momenta = [], []
    for _ in range(8):
        p.grad = torch.randn(4096)
        before = fused._COMPILES[0]
        opt.step()
        sched.step()
        counts.append(fused._COMPILES[0] - before)
        momenta.append(opt.param_groups[0]["momentum"])
    assert sum(counts[1:]) == 0, counts
    assert len(set(momenta)) == len(momenta)  # a new momentum at every step


@pytest.mark.parametrize("saved, built", [("fused", "loop"), ("loop", "foreach"), ("foreach", "auto")])
def test_a_loaded_checkpoint_keeps_the_impl_the_optimizer_was_built_with(saved, built, monkeypatch):
    monkeypatch.setattr(fused, "unavailable_reason", lambda: None)  # construction only
    p = torch.nn.Parameter(torch.randn(5))
    source = impl_torch.Adagrad([p], impl=saved)
    target = impl_torch.Adagrad([torch.nn.Parameter(torch.randn(5))], impl=built)
    target.load_state_dict(source.state_dict())
    assert target.group_impls() == [built]
    assert target.param_groups[0]["impl"] == built


def _run_child(code: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


_CHILD = """
import logging, torch, impl_torch
from impl_torch import fused
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
n = 1 << 20
p = torch.nn.Parameter(torch.randn(n)); q = p.detach().clone().requires_grad_()
opt = impl_torch.RMSprop([p], momentum=0.9)
ref = torch.optim.RMSprop([q], momentum=0.9)
for _ in range(3):
    p.grad = torch.randn(n); q.grad = p.grad.clone()
    opt.step(); ref.step()
print("BITWISE", torch.equal(p, q))
print("REASON", fused.unavailable_reason())
try:
    impl_torch.Adagrad([p], impl="fused")
    print("FUSED constructed")
except RuntimeError as exc:
    print("FUSED refused:", exc)
"""


def _broken_compilers(tmp_path) -> dict:
    failing = tmp_path / "failing-cxx"
    failing.write_text("#!/bin/sh\necho 'failing-cxx: refusing to compile' >&2\nexit 1\n")
    failing.chmod(0o755)
    return {
        "no-compiler": {"CXX": str(tmp_path / "no-such-dir" / "g++"), "PATH": "/nonexistent"},
        "failing-compiler": {"CXX": str(failing)},
    }


@pytest.mark.parametrize("case", ["no-compiler", "failing-compiler"])
def test_without_a_usable_compiler_auto_steps_eagerly_with_one_warning(case, tmp_path):
    env = _broken_compilers(tmp_path)[case]
    if case != "no-compiler":
        env["PATH"] = os.environ.get("PATH", "")
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    # the child's python must be found without PATH
    out = _run_child(_CHILD, env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, out.stderr[-3000:]
    assert "impl='auto' steps eagerly" in warnings[0]
    assert "BITWISE True" in out.stdout
    assert "REASON None" not in out.stdout
    assert "FUSED refused: impl='fused' (torch.compile) is unavailable:" in out.stdout, out.stdout


def test_the_probe_names_a_cache_directory_it_cannot_write(monkeypatch, tmp_path):
    """A read-only Inductor cache (a non-root container): the probe says so. (Root writes
    anywhere, so the directory's answer to ``os.access`` is what is stood in for here.)"""
    from impl_torch import torch_private

    cache = tmp_path / "inductor"
    cache.mkdir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(cache) else real(path, mode))
    reason = torch_private.compiler_problem()
    assert reason == f"Inductor's cache directory {str(cache)!r} is not writable"
    monkeypatch.setattr(os, "access", real)
    assert torch_private.compiler_problem() is None


@needs_compile
def test_a_compile_that_fails_at_step_time_falls_back_once(tmp_path):
    """The probe's one-line file compiles, Inductor's kernels do not (a compiler that
    fails on them): the first default step completes with torch.optim's result, one
    WARNING says why, and later steps do not try again."""
    picky = tmp_path / "picky-cxx"
    picky.write_text('#!/bin/sh\ncase "$*" in *impl_torch_probe*) exec g++ "$@";; *.cpp*) ;; *) exec g++ "$@";; esac\n'
                     "echo 'picky-cxx: no' >&2\nexit 1\n")
    picky.chmod(0o755)
    env = {"CXX": str(picky), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
           "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
    out = _run_child(_CHILD, env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, out.stderr[-3000:]
    assert "compiling the fused rmsprop step (" in warnings[0] and "failed" in warnings[0], warnings[0]
    assert "BITWISE True" in out.stdout
    assert "REASON None" in out.stdout
    assert "FUSED constructed" in out.stdout


def test_a_failed_compile_steps_the_rest_once_and_stays_eager(monkeypatch, caplog):
    """In-process: the fused part of a group fails after stepping its first tensor; the
    others are stepped eagerly, each once, and the next step does not try fused again."""
    rule = rules.RMSprop()
    calls = []

    def failing(rule, params, grads, states, impl="fused"):
        calls.append(len(params))
        impl_torch.step(rule, params[:1], grads[:1], states[:1], impl="loop")
        raise fused.CompileFailed("impl='auto': compiling the fused rmsprop step failed (test)", [0])

    monkeypatch.setattr(functional, "_fused", failing)
    monkeypatch.setattr(functional, "_WARNED", set())
    part = functional._AutoFused()
    params = [torch.zeros(4) for _ in range(3)]
    ref = [p.clone() for p in params]
    states = [impl_torch.init_state(rule, p) for p in params]
    ref_states = [impl_torch.init_state(rule, p) for p in ref]
    with caplog.at_level(logging.WARNING, logger="impl_torch"):
        for _ in range(2):
            grads = [torch.ones(4)] * 3
            part(rule, params, grads, states)
            impl_torch.step(rule, ref, grads, ref_states, impl="loop")
    assert calls == [3]
    assert [s["step"].item() for s in states] == [2.0] * 3
    assert all(torch.equal(p, q) for p, q in zip(params, ref))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@needs_compile
@pytest.mark.parametrize("name", CLASSES)
def test_threads_stepping_their_own_fused_optimizers(name):
    """Four threads build and step their own fused optimizers at once (the first step of
    each compiles or waits for the same compiled kernel); each ends where one thread
    stepping alone ends."""
    torch.manual_seed(0)
    starts = [torch.randn(3000) for _ in range(4)]
    grads = [[torch.randn(3000) for _ in range(3)] for _ in range(4)]
    results, errors = [None] * 4, []

    def train(k):
        try:
            p = torch.nn.Parameter(starts[k].clone())
            opt = ours_torch_class(name)([p], impl="fused", lr=0.0123 + k * 1e-4)
            for g in grads[k]:
                p.grad = g.clone()
                opt.step()
            results[k] = p.detach().clone()
        except BaseException as exc:  # reported below, with the thread
            errors.append((k, repr(exc)))

    threads = [threading.Thread(target=train, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(4):
        p = torch.nn.Parameter(starts[k].clone())
        opt = ours_torch_class(name)([p], impl="loop", lr=0.0123 + k * 1e-4)
        for g in grads[k]:
            p.grad = g.clone()
            opt.step()
        torch.testing.assert_close(results[k], p.detach(), rtol=1.3e-6, atol=1e-6)


@needs_compile
def test_stepping_while_another_thread_compiles():
    """``torch.compiler.is_compiling()`` is a process-wide flag, True in every thread while
    one compiles: a step that read it took the traced branch (KeyError). Steps in one
    thread while another ``torch.compile``s its model: no error, torch.optim's result."""
    stop, errors = threading.Event(), []

    def compile_models():
        try:
            for k in range(3):
                torch._dynamo.reset()
                f = torch.compile(lambda x, k=k: (x.sin() * (k + 1)).cos().sum())
                f(torch.randn(50 + k))
        except BaseException as exc:
            errors.append(("compile", repr(exc)))
        finally:
            stop.set()

    model, ref_model = _mlp(1), _mlp(1)
    opts = [impl_torch.RMSprop(model.parameters(), lr=1e-3), torch.optim.RMSprop(ref_model.parameters(), lr=1e-3)]
    x = torch.randn(16, 4)
    worker = threading.Thread(target=compile_models)
    worker.start()
    steps = 0
    try:
        while not stop.is_set() or steps < 5:
            for m, o in zip((model, ref_model), opts):
                o.zero_grad()
                m(x).pow(2).mean().backward()
                o.step()
            steps += 1
    except BaseException as exc:
        errors.append(("step", repr(exc)))
    worker.join()
    assert not errors, errors
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)


def _max_depth(fn) -> tuple[int, list[str]]:
    """The deepest Python call stack under ``fn()`` (frames of ``fn``'s callees)."""
    depth, deepest, stack = [0], [0, []], []

    def profile(frame, event, arg):
        if event == "call":
            depth[0] += 1
            stack.append(frame.f_code.co_name)
            if depth[0] > deepest[0]:
                deepest[:] = [depth[0], list(stack)]
        elif event == "return" and stack:
            depth[0] -= 1
            stack.pop()

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return deepest[0], deepest[1]


@pytest.mark.parametrize("foreach", [False, True], ids=["default-2-tensors", "foreach"])
@pytest.mark.parametrize("name", CLASSES)
def test_a_warm_step_is_no_deeper_than_torch_optims(name, foreach):
    ours = [torch.nn.Parameter(torch.randn(10)), torch.nn.Parameter(torch.randn(3))]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    for p, q in zip(ours, theirs):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    kwargs = {"foreach": True} if foreach else {}
    opt = ours_torch_class(name)(ours, **kwargs)
    ref = torch_class(name)(theirs, foreach=foreach)
    for _ in range(2):  # warm: plans made
        opt.step()
        ref.step()
    ours_depth, ours_stack = _max_depth(opt.step)
    theirs_depth, theirs_stack = _max_depth(ref.step)
    assert ours_depth <= theirs_depth, (ours_stack, theirs_stack)


def test_the_readme_states_the_thresholds_the_code_uses():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = " ".join(f.read().split())
    section = text[text.index("**The default, `auto`, never surprises a small model.**"):
                   text.index("**What a step runs.**")]
    per_tensor = functional.AUTO_FUSED_MIN_TENSOR_NUMEL
    group = functional.AUTO_FUSED_MIN_NUMEL  # one threshold for every rule
    assert per_tensor == 1 << (per_tensor.bit_length() - 1) and group == 1 << (group.bit_length() - 1)
    assert f"tensors of at least 2**{per_tensor.bit_length() - 1} elements" in section
    assert f"hold at least 2**{group.bit_length() - 1} elements in all" in section
    assert f"below 2**{group.bit_length() - 1} elements per group never compiles" in section
    assert f"up to {functional.AUTO_LOOP_MAX_TENSORS} tensors" in section


def test_an_unknown_torch_version_takes_the_guarded_call_and_says_so(monkeypatch, caplog):
    from impl_torch import torch_private

    monkeypatch.setattr(torch, "__version__", "9.9.0")
    torch_private.direct_calls.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="impl_torch"):
            assert torch_private.direct_calls() is False
            assert torch_private.direct_calls() is False
    finally:
        monkeypatch.undo()
        torch_private.direct_calls.cache_clear()
    messages = [r.getMessage() for r in caplog.records if "9.9.0" in r.getMessage()]
    assert len(messages) == 1 and "guarded call" in messages[0]
    assert torch_private.direct_calls() is True  # this torch is one it knows


@needs_compile
@pytest.mark.parametrize("shapes", [[(300,)], [(1 << 16,)], [(5,)] * 4], ids=["flat", "rows", "many"])
def test_the_guarded_fallback_steps_like_the_direct_call(monkeypatch, shapes):
    """With direct calls off (another torch), every kind of compiled step goes through
    torch.compile's guarded call and still agrees with the loop after every step."""
    from impl_torch import torch_private

    monkeypatch.setattr(torch_private, "direct_calls", lambda: False)
    monkeypatch.setattr(fused, "_COMPILED", {})
    rule = rules.RMSprop(lr=0.0321, momentum=0.5, centered=True)
    gen = torch.Generator().manual_seed(5)
    params = [torch.randn(s, generator=gen) for s in shapes]
    ref = [p.clone() for p in params]
    states = [impl_torch.init_state(rule, p) for p in params]
    ref_states = [impl_torch.init_state(rule, p) for p in ref]
    for k in range(3):
        r = rule.replace(lr=0.01 * (k + 1), momentum=0.5 + 0.1 * k)
        grads = [torch.randn(s, generator=gen) for s in shapes]
        impl_torch.step(r, params, grads, states, impl="fused")
        impl_torch.step(r, ref, grads, ref_states, impl="loop")
        for p, q in zip(params, ref):
            torch.testing.assert_close(p, q, rtol=1.3e-6, atol=1e-6)
    assert all(isinstance(fn, torch_private._Guarded) for fn in fused._COMPILED.values())
