"""impl="fused" (impl_torch/fused.py): torch.compile of the same per-rule math.

Kept small on purpose: each rule configuration compiles one graph (a few seconds cold,
about 1 s with Inductor's on-disk cache warm), so a few configurations, small shapes and
many steps per compiled graph.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch

import impl_torch
from adaptbench import rules
from impl_torch import functional, fused, optimizer
from impl_torch.updates import UPDATES
from tests.registry_cases import base, everything, has_field

pytestmark = pytest.mark.skipif(
    fused.unavailable_reason() is not None, reason=f"torch.compile unavailable: {fused.unavailable_reason()}"
)

#: Every registered rule impl_torch has math for.
RULES = [name for name in rules.RULES if name in UPDATES]


def _all(name):
    """The rule under torch.optim's defaults with every term on (``registry_cases.everything``)."""
    rule = base(rules.RULES[name])
    return rule.replace(**everything(rule))


# Each rule with every term on (one compiled graph per configuration and dtype: a few
# seconds each), and under the last of its other conventions (optax's: eps inside the root,
# Adagrad's masked update).
CONFIGS = [
    pytest.param(rule, id=f"{name}-{case}")
    for name in RULES
    for others in [[c for c in rules.RULES[name].PRESETS if c != "torch"]]
    for case, rule in [("torch-all", _all(name)), *((c, rules.preset(name, c)) for c in others[-1:])]
]
STEPS = 8


def _agree(actual, expected, old, dtype):
    tol = rules.tolerance(dtype)
    scale = torch.maximum(torch.maximum(expected.abs(), old.abs()), (expected - old).abs())
    bound = tol.rtol * scale + tol.atol * expected.abs().max().clamp_min(1e-30)
    assert torch.all((actual - expected).abs() <= bound), (actual - expected).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("rule", CONFIGS)
def test_fused_agrees_with_loop_after_every_step(rule, dtype):
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,), ()]
    ref = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    ref_states = [impl_torch.init_state(rule, p) for p in ref]
    for _ in range(STEPS):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in ref]
        # re-synchronise: fused starts each step from the loop's params and state
        params = [p.clone() for p in ref]
        states = [{k: v.clone() for k, v in s.items()} for s in ref_states]
        old = [p.clone() for p in ref]
        impl_torch.step(rule, ref, grads, ref_states, impl="loop")
        impl_torch.step(rule, params, grads, states, impl="fused")
        for p, e, o, s, es in zip(params, ref, old, states, ref_states):
            _agree(p, e, o, dtype)
            assert s.get("step") == es.get("step")
            for n in rule.state_names:
                _agree(s[n], es[n], es[n], dtype)


def _graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("name", RULES)
def test_no_recompile_when_lr_changes_or_steps_advance(name):
    rule = _all(name)
    p = torch.randn(64)
    state = impl_torch.init_state(rule, p)
    impl_torch.step(rule, [p], [torch.randn(64)], [state], impl="fused")  # compiles
    before = _graphs()
    for i in range(10):
        lr_rule = rule.replace(lr=0.01 * (i + 1))
        impl_torch.step(lr_rule, [p], [torch.randn(64)], [state], impl="fused")
    # a different size of the same rank is covered by the dynamic-shape graph
    q = torch.randn(100)
    impl_torch.step(rule, [q], [torch.randn(100)], [impl_torch.init_state(rule, q)], impl="fused")
    assert _graphs() == before
    assert state.get("step", 11) == 11


@pytest.mark.parametrize("name", RULES)
def test_fused_keyword_selects_fused_and_steps(name):
    cls, kwargs = impl_torch.optimizer_class(name), _all(name).as_dict()
    p = torch.nn.Parameter(torch.randn(5, 2))
    opt = cls([p], fused=True, **kwargs)
    assert opt.group_impls() == ["fused"]
    ref = p.detach().clone()
    p.grad = torch.randn(5, 2)
    ref_opt = cls([torch.nn.Parameter(ref)], impl="loop", **kwargs)
    ref_opt.param_groups[0]["params"][0].grad = p.grad.clone()
    opt.step()
    ref_opt.step()
    torch.testing.assert_close(p.detach(), ref_opt.param_groups[0]["params"][0].detach())
    assert "fused" in impl_torch.IMPLS
    assert cls([torch.nn.Parameter(torch.ones(1))], impl="fused").group_impls() == ["fused"]


@pytest.mark.parametrize("name", RULES)
def test_clear_error_when_compile_unavailable(monkeypatch, name):
    monkeypatch.setattr(fused, "unavailable_reason", lambda: "no C++ compiler found (test)")
    optimizer._resolve_cached.cache_clear()
    cls, rule = impl_torch.optimizer_class(name), base(rules.RULES[name])
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(RuntimeError, match=r"impl='fused' \(torch.compile\) is unavailable: no C\+\+ compiler"):
        cls([p], fused=True)
    with pytest.raises(RuntimeError, match="unavailable"):
        cls([p], impl="fused")
    with pytest.raises(RuntimeError, match="unavailable"):
        impl_torch.step(rule, [p.detach()], [torch.ones(3)], [impl_torch.init_state(rule, p)], impl="fused")
    # the other impls are unaffected
    assert cls([p], foreach=True).group_impls() == ["foreach"]
    optimizer._resolve_cached.cache_clear()


def test_registered_in_dispatch_table():
    assert functional._IMPL_TABLE["fused"] is functional._fused


@pytest.mark.parametrize("name", RULES)
def test_non_contiguous_params(name):
    rule = _all(name)
    base = torch.randn(6, 8)
    p, q = base[:, ::2].clone(), base.clone()[:, ::2]  # contiguous copy vs strided view
    assert not q.is_contiguous()
    sp, sq = impl_torch.init_state(rule, p), impl_torch.init_state(rule, q)
    for _ in range(3):
        g = torch.randn(6, 4)
        impl_torch.step(rule, [p], [g], [sp], impl="loop")
        impl_torch.step(rule, [q], [g], [sq], impl="fused")
    torch.testing.assert_close(q, p)


def test_auto_routes_each_group_by_its_size_and_count(monkeypatch):
    """impl="auto" (the default): in a (device, dtype) group whose tensors of at least
    AUTO_FUSED_MIN_TENSOR_NUMEL elements hold AUTO_FUSED_MIN_NUMEL in all, those
    go to fused; the rest of it, and smaller groups, to loop when they have at most
    AUTO_LOOP_MAX_TENSORS tensors, else to foreach; every tensor is stepped once."""
    routed = {}

    def spy(name, real):
        def fn(rule, params, grads, states, **kwargs):
            routed.setdefault(name, []).append(sorted(p.numel() for p in params))
            real(rule, params, grads, states, **kwargs)

        return fn

    for name in ("loop", "foreach", "fused"):
        monkeypatch.setattr(functional, f"_{name}", spy(name, getattr(functional, f"_{name}")))
    big = functional.AUTO_FUSED_MIN_NUMEL
    few = functional.AUTO_LOOP_MAX_TENSORS
    params = [torch.randn(n, requires_grad=True) for n in (15, big // 2, 1000, big // 2)]
    params += [torch.randn(n, dtype=torch.float64, requires_grad=True) for n in [15] * few]
    params += [torch.randn(n, dtype=torch.bfloat16, requires_grad=True) for n in [15] * (few + 1)]
    opt = impl_torch.RMSprop(params)
    assert opt.group_impls() == ["auto"]
    reference = [p.detach().clone() for p in params]
    ref_opt = impl_torch.RMSprop(reference, impl="loop")
    for p, r in zip(params, reference):
        p.grad = torch.randn_like(p)
        r.grad = p.grad.clone()
    ref_opt.step()
    routed.clear()  # the reference's own loop
    opt.step()
    assert routed == {"fused": [[big // 2, big // 2]], "loop": [[15, 1000], [15] * few],
                      "foreach": [[15] * (few + 1)]}
    for p, r in zip(params, reference):
        _agree(p.detach(), r, r, str(r.dtype).removeprefix("torch."))


def test_auto_never_compiles_a_group_below_2_to_the_20():
    t = functional.AUTO_FUSED_MIN_NUMEL  # one threshold for every rule
    assert isinstance(t, int) and t >= 1 << 20
    assert functional.AUTO_FUSED_MIN_TENSOR_NUMEL <= t


@pytest.mark.parametrize("n_tensors, same_as", [(1, "foreach=False"), (4, "foreach=True")])
def test_auto_never_compiles_where_compile_is_unavailable(monkeypatch, n_tensors, same_as):
    monkeypatch.setattr(fused, "unavailable_reason", lambda: "no C++ compiler (test)")
    numel = functional.AUTO_FUSED_MIN_NUMEL
    ps = [torch.randn(numel, requires_grad=True) for _ in range(n_tensors)]
    qs = [p.detach().clone() for p in ps]
    for p, q in zip(ps, qs):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    impl_torch.Adagrad(ps).step()
    torch.optim.Adagrad(qs, foreach=same_as == "foreach=True").step()
    for p, q in zip(ps, qs):
        assert torch.equal(p.detach(), q)


@pytest.mark.parametrize("n_tensors", [2, fused.MANY_MIN_TENSORS], ids=["per-tensor", "one-call"])
def test_scalar_float64_tensors_are_updated_in_place(n_tensors):
    """Inductor takes 0-dim float64 CPU inputs as Python scalars; the fused paths pass flat
    views so that a scalar parameter and the step counters (float64 when torch's default
    dtype is float64, as in torch.optim) are still updated in place."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        rule = rules.Adagrad(lr_decay=0.5)
        shapes = [(), (5,), (2, 3), (4, 1, 2)][:n_tensors]
        params = [torch.randn(s) for s in shapes]
        grads = [torch.randn(s) for s in shapes]
        reference = [p.clone() for p in params]
        states = [impl_torch.init_state(rule, p) for p in params]
        ref_states = [impl_torch.init_state(rule, p) for p in reference]
        for _ in range(3):
            impl_torch.step(rule, params, grads, states, impl="fused")
            impl_torch.step(rule, reference, grads, ref_states, impl="loop")
        assert [float(s["step"]) for s in states] == [3.0] * n_tensors
        assert states[0]["step"].dtype == torch.float64
        for p, r in zip(params, reference):
            _agree(p, r, r, "float64")
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("impl", ["fused", "auto"])
def test_a_compiling_step_logs_once_what_it_compiled_and_how_long(caplog, impl):
    """The first step of a new configuration compiles (seconds); it says so at INFO on
    the "impl_torch" logger, once: the next step reuses the compiled code and is silent."""
    # a structure no other test (or case) compiles, so this step compiles here (numbers
    # alone would not: they are inputs of the compiled step)
    rule = rules.preset("rmsprop", "torch", centered=True, bias_correction=True,
                        **({"eps_in_sqrt": True} if impl == "fused" else {"maximize": True}))
    n = functional.AUTO_FUSED_MIN_NUMEL if impl == "auto" else 1000
    params = [torch.zeros(n, dtype=torch.float64)]
    states = [impl_torch.init_state(rule, params[0])]
    grads = [torch.ones(n, dtype=torch.float64)]
    with caplog.at_level(logging.INFO, logger="impl_torch"):
        impl_torch.step(rule, params, grads, states, impl=impl)
        impl_torch.step(rule, params, grads, states, impl=impl)
    records = [r for r in caplog.records if r.name.startswith("impl_torch")]
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert records[0].levelno == logging.INFO
    for part in ("rmsprop", f"impl={impl!r}", "1 tensor,", f"{n} elements", "torch.float64", "cpu"):
        assert part in message, message
    assert re.search(r"in \d+\.\d\d s", message), message


def _direct_case(rule, shapes, dtype, steps, lrs=None):
    """Steps ``shapes`` with impl="fused" and impl="loop" from the same start, with the
    lr of step k ``lrs[k]``, and checks params and state after every step."""
    gen = torch.Generator().manual_seed(1)
    ref = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    params = [p.clone() for p in ref]
    ref_states = [impl_torch.init_state(rule, p) for p in ref]
    states = [impl_torch.init_state(rule, p) for p in params]
    for k in range(steps):
        r = rule.replace(lr=lrs[k]) if lrs else rule
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in ref]
        old = [p.clone() for p in ref]
        impl_torch.step(r, ref, grads, ref_states, impl="loop")
        impl_torch.step(r, params, grads, states, impl="fused")
        for p, e, o, s, es in zip(params, ref, old, states, ref_states):
            assert s["step"].item() == es["step"].item() == k + 1
            if p.numel():
                _agree(p, e, o, str(dtype).removeprefix("torch."))
                for n in rule.state_names:
                    _agree(s[n], es[n], es[n], str(dtype).removeprefix("torch."))
        # re-synchronise, as in test_fused_agrees_with_loop_after_every_step
        for p, e in zip(params, ref):
            p.copy_(e)
        for s, es in zip(states, ref_states):
            for n in rule.state_names:
                s[n].copy_(es[n])


@pytest.mark.parametrize("n_tensors", [1, fused.MANY_MIN_TENSORS], ids=["per-tensor", "one-call"])
def test_lr_changing_every_step_reaches_the_directly_called_step(n_tensors):
    """After its first call a compiled step is called without Dynamo (``torch_private._Direct``):
    a new lr every step (Adagrad's rate computed from it and the advancing step counter)
    must still reach the kernel, on both the per-tensor and the one-call path."""
    rule = rules.preset("adagrad", "torch").replace(lr_decay=0.3, weight_decay=0.05)
    shapes = [(7,), (3, 5), (2,), (4, 1)][:n_tensors]
    _direct_case(rule, shapes, torch.float32, 5, lrs=[0.1, 0.02, 0.3, 0.3, 0.005])


def test_sizes_zero_one_and_many_share_no_compiled_step():
    """Sizes 0 and 1 get graphs of their own (Dynamo specialises them); every size from 2
    one dynamic-shape graph, called directly."""
    rule = rules.preset("rmsprop", "torch").replace(momentum=0.5, nesterov=True)
    for shapes in ([(0,)], [(1,)], [(2,)], [(5, 3)], [(1000,)]):
        _direct_case(rule, shapes, torch.float32, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.complex64], ids=str)
def test_direct_step_other_dtypes(dtype):
    """16-bit dtypes (computed in float32 by Inductor: within tolerance) and complex
    parameters (stepped as real views) on the directly called path."""
    if dtype.is_complex:
        rule = rules.preset("adadelta", "torch").replace(weight_decay=0.1)
        gen = torch.Generator().manual_seed(3)
        params = [torch.randn(6, dtype=dtype, generator=gen)]
        ref = [p.clone() for p in params]
        states = [impl_torch.init_state(rule, p) for p in params]
        ref_states = [impl_torch.init_state(rule, p) for p in ref]
        for _ in range(3):
            grads = [torch.randn(6, dtype=dtype, generator=gen)]
            impl_torch.step(rule, params, grads, states, impl="fused")
            impl_torch.step(rule, ref, grads, ref_states, impl="loop")
        torch.testing.assert_close(torch.view_as_real(params[0]), torch.view_as_real(ref[0]))
        return
    # Inductor computes 16-bit math in float32 and rounds once (functional.AUTO_FUSED_DTYPES),
    # so the reference is the loop in float32 from the same 16-bit values, rounded.
    rule = rules.preset("rmsprop", "torch").replace(centered=True, weight_decay=0.01)
    gen = torch.Generator().manual_seed(2)
    p = torch.randn(50, generator=gen).to(dtype)
    state = impl_torch.init_state(rule, p)
    for _ in range(3):
        g = torch.randn(50, generator=gen).to(dtype)
        ref, ref_state = p.float(), {k: v.float() for k, v in state.items()}
        impl_torch.step(rule, [ref], [g.float()], [ref_state], impl="loop")
        impl_torch.step(rule, [p], [g], [state], impl="fused")
        torch.testing.assert_close(p, ref.to(dtype), rtol=rules.tolerance(str(dtype)).rtol, atol=1e-5)
        for k in rule.state_names:
            torch.testing.assert_close(state[k], ref_state[k].to(dtype),
                                       rtol=rules.tolerance(str(dtype)).rtol, atol=1e-5)


def test_a_thread_count_change_gets_its_own_compiled_step():
    """Dynamo guarded on the thread count; the directly called steps are keyed on it."""
    rule = rules.preset("adagrad", "torch").replace(eps=1e-9)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            _direct_case(rule, [(40,)], torch.float32, 2)
            _direct_case(rule, [(3,)] * fused.MANY_MIN_TENSORS, torch.float32, 2)
    finally:
        torch.set_num_threads(previous)


def test_direct_step_bumps_autograd_versions():
    """The updated tensors' version counters advance (AOTAutograd's wrapper runs), so a
    graph that saved a parameter before the step notices it was modified."""
    rule = rules.preset("adagrad", "torch")
    p = torch.randn(10, requires_grad=True)
    state = impl_torch.init_state(rule, p)
    for _ in range(3):  # the third call is the directly called one's second
        loss = (p * p).sum()
        impl_torch.step(rule, [p.detach()], [torch.randn(10)], [state], impl="fused")
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


@pytest.mark.parametrize("first", [1000, 3])
def test_a_first_step_on_a_1d_parameter_compiles_for_every_size(first):
    """The first fused step of a configuration on a 1-D ``nn.Parameter`` (passed to the
    compiled function as it is, not as a view) used to compile a graph for that size only,
    which later steps of other sizes then failed (``expected size 2000==1000``)."""
    torch._dynamo.reset()
    fused._COMPILED.clear()
    for n in (first, 2000, 7):
        p = torch.nn.Parameter(torch.randn(n))
        p.grad = torch.randn(n)
        q = p.detach().clone()
        impl_torch.Adagrad([p], impl="fused", lr=0.1).step()
        expected = q - 0.1 * p.grad / (p.grad.abs() + 1e-10)
        torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("n_tensors", [2, fused.MANY_MIN_TENSORS + 1], ids=["per-tensor", "one-call"])
def test_parameters_sharing_a_gradient_tensor_do_not_fix_the_compiled_order(n_tensors):
    """Dynamo passes a tensor given twice once; a compiled step first called with one
    gradient tensor shared by several parameters must not then route one tensor to every
    place at later steps (seen: parameters moved by another's gradient, 2e-2 off)."""
    torch._dynamo.reset()
    fused._COMPILED.clear()
    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(8, generator=gen)) for _ in range(n_tensors)]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    shared = torch.randn(8, generator=gen)
    for p, q in zip(ours, ref):
        p.grad, q.grad = shared, shared.clone()
    opt, ref_opt = impl_torch.Adagrad(ours, impl="fused"), impl_torch.Adagrad(ref, impl="loop")
    for _ in range(3):
        opt.step()
        ref_opt.step()
        for p, q in zip(ours, ref):
            p.grad = torch.randn(8, generator=gen)
            q.grad = p.grad.clone()
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach())


@pytest.mark.parametrize("name", RULES)
def test_large_tensors_step_as_rows_bitwise_as_the_flat_graph(monkeypatch, name):
    """Contiguous tensors from ``ROWS_MIN_NUMEL`` elements whose size ``ROW`` divides are
    stepped as ``(n // ROW, ROW)`` views (``fused._make_rows``): the same elementwise math,
    so bitwise the flat graph's result; one rows graph serves every such size, other sizes
    keep the flat graph, and the rows kernel has no per-vector tail branch."""
    from torch._inductor.codecache import PyCodeCache

    # a configuration no other test compiles, so its kernels are loaded here: weight decay
    # switched from the preset's (AdamW's is on) and maximize, an odd pair
    preset = rules.preset(name, "torch")
    rule = preset.replace(lr=0.0123, weight_decay=0.0 if preset.has_weight_decay else 0.01, maximize=True)
    sizes = [fused.ROWS_MIN_NUMEL, fused.ROWS_MIN_NUMEL + 3 * fused.ROW, fused.ROWS_MIN_NUMEL + 5]
    gen = torch.Generator().manual_seed(4)
    starts = [torch.randn(n, generator=gen) for n in sizes]
    grads = [[torch.randn(n, generator=gen) for n in sizes] for _ in range(3)]

    def run(rows_min):
        monkeypatch.setattr(fused, "ROWS_MIN_NUMEL", rows_min)
        params = [p.clone() for p in starts]
        states = [impl_torch.init_state(rule, p) for p in params]
        for gs in grads:
            for p, g, s in zip(params, gs, states):  # one tensor per call: the per-tensor path
                impl_torch.step(rule, [p], [g], [s], impl="fused")
        return params, states

    # another suite in this process may have compiled the same structure (the stand-in
    # device's weight_decay option): only what this test compiles is counted
    known = set(fused._COMPILED)
    before = len(PyCodeCache.modules)
    rows_params, rows_states = run(fused.ROWS_MIN_NUMEL)
    rows_sources = [open(m.__file__).read() for m in PyCodeCache.modules[before:]]
    flat_params, flat_states = run(1 << 62)
    for p, q, s, t in zip(rows_params, flat_params, rows_states, flat_states):
        assert torch.equal(p, q)
        assert all(torch.equal(s[k], t[k]) for k in s)
        assert s.get("step", len(grads)) == len(grads)
    key = fused._key(rule)
    # the rows graph is this test's; the flat one may be an earlier test's (a user's rule
    # has fewer distinct configurations to pick from)
    compiled = {str(k[-1]) for k in fused._COMPILED if k[0] == key}
    assert sorted(str(k[-1]) for k in fused._COMPILED if k[0] == key and k not in known) in (["2", "rows"], ["rows"])
    assert {"2", "rows"} <= compiled
    kernels = [src for src in rows_sources if "extern \"C\"" in src and "x0" in src]
    rows_kernels = [src for src in kernels if f"{fused.ROW}L*ks0" in src]
    assert rows_kernels, kernels
    assert all("C10_UNLIKELY" not in src and "#pragma omp parallel" in src for src in rows_kernels)


def _odd_numbers(name):
    # numbers that round differently in float32 than in float64
    cls = rules.RULES[name]
    return {"lr": 0.0123456789} | ({"eps": 1.23456789e-7} if has_field(cls, "eps") else {})


# Each rule with torch.optim's defaults, and with every term on (coupled weight decay).
WORKING_DTYPE_CASES = [
    pytest.param(rule, id=f"{name}-{case}")
    for name in RULES
    for rule in [base(rules.RULES[name]).replace(**_odd_numbers(name))]
    for case, rule in [("defaults", rule), ("all", rule.replace(**everything(rule, term=0.0123, weight_decay=0.0123)))]
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("rule", WORKING_DTYPE_CASES)
def test_multipliers_in_the_working_dtype_are_bitwise_float64_ones(monkeypatch, rule, dtype):
    """Where a hyperparameter (``lr``, ``eps``, ``momentum``, coupled ``weight_decay``) is
    only a multiplier or addend (``Rule.multiplier_only``), rounding it to the working dtype
    before the graph (``_hyper_dtype``) gives bitwise what casting a float64 one inside the
    graph gave (16-bit steps keep float64: rounding ``lr`` to 16 bits changed their results)."""
    working = torch.float32 if dtype == torch.float32 else torch.float64
    for field, value in rule.as_dict().items():
        if type(value) is float:
            expected = working if rule.multiplier_only(field) else torch.float64
            assert fused._hyper_dtype(rule, field, dtype) == expected, field
    gen = torch.Generator().manual_seed(3)
    results = []
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(fused, "_hyper_dtype", lambda rule, name, dtype: torch.float64)
        torch._dynamo.reset()
        fused._COMPILED.clear()
        gen.manual_seed(3)
        p = torch.randn(5000, generator=gen).to(dtype)
        state = impl_torch.init_state(rule, p)
        for _ in range(3):
            g = torch.randn(5000, generator=gen).to(dtype)
            impl_torch.step(rule, [p], [g], [state], impl="fused")
        results.append(p)
    assert torch.equal(results[0], results[1])
