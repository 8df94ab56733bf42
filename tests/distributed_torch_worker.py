"""Rank processes for tests/test_distributed_torch.py (gloo on CPU).

``spawn(world, out_dir, tasks)`` starts ``world`` ranks with ``torch.multiprocessing``
(rendezvous through a file in ``out_dir``: no port to race for), runs the named tasks on
each, and returns what rank 0 collected: a dict of plain CPU tensors and flags that the
tests compare in the parent process, so a failure names its case there.

Every rank computes the loss on the same batch, so FSDP2's averaged gradient is the
one-rank gradient exactly ((g + g) / 2 == g) and 1- and 2-rank runs follow one trajectory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import impl_torch
from tests.peer_lookup import ours_torch_class, rule_names, torch_class

RULES = rule_names("torch")
ALL_IMPLS = ("loop", "foreach", "fused", "auto")


def available_impls() -> tuple[str, ...]:
    """The impls that run here (``"fused"`` needs torch.compile; the tests skip it, naming
    the reason, where it cannot)."""
    from impl_torch import fused

    return ALL_IMPLS if fused.unavailable_reason() is None else tuple(i for i in ALL_IMPLS if i != "fused")


# Options that exercise every state tensor and the step counter's use in the math.
OPTIONS = {
    "adagrad": {"lr_decay": 0.01, "weight_decay": 0.01},
    "adadelta": {"weight_decay": 0.01},
    "rmsprop": {"centered": True, "momentum": 0.9},
    "adam": {"weight_decay": 0.01, "amsgrad": True},
    "adamw": {"amsgrad": True},  # (torch.optim.AdamW's default decay is on)
    # (nesterov refuses dampening; dampening tells the first step from the later ones)
    "sgd": {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
}
# torch.optim's path that each impl mirrors (fused and auto are compared within tolerance).
TORCH_FOREACH = {"loop": False, "foreach": True, "fused": False, "auto": False}
STEPS = 3
CHECKPOINT_STEPS = 2
# (name, parameter placements, gradient placements) on a 1-D mesh.
PLACEMENTS = (
    ("shard0", "S0", "S0"),
    ("shard1", "S1", "S1"),
    ("replicate", "R", "R"),
    ("shard0-partial-grad", "S0", "P"),
    ("replicate-partial-grad", "R", "P"),
)


def _placement(code: str):
    from torch.distributed.tensor import Partial, Replicate, Shard

    return {"S0": Shard(0), "S1": Shard(1), "R": Replicate(), "P": Partial()}[code]


def _optim_classes(rule: str):
    return ours_torch_class(rule), torch_class(rule)


def _mlp() -> torch.nn.Module:
    # Odd sizes: dim 0 does not split evenly over 2 ranks, so FSDP2 pads its shards.
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(7, 33), torch.nn.Tanh(), torch.nn.Linear(33, 17), torch.nn.Tanh(),
        torch.nn.Linear(17, 5),
    )


def _shard(model: torch.nn.Module, mesh) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(16, 7, generator=g)


def _train(model, opt, steps: int, first: int = 0) -> None:
    for k in range(first, first + steps):
        model(_batch(k)).square().mean().backward()
        opt.step()
        opt.zero_grad()


def _full(model) -> list[torch.Tensor]:
    return [p.full_tensor().clone() for p in model.parameters()]


def _state_sharded_like_params(model, opt) -> bool:
    from torch.distributed.tensor import DTensor

    for p in model.parameters():
        for name, t in opt.state[p].items():
            if name == "step":
                if isinstance(t, DTensor):
                    return False
                continue
            if not isinstance(t, DTensor) or t.placements != p.placements:
                return False
            if t.to_local().shape != p.to_local().shape:
                return False
    return True


def task_fsdp(mesh, out_dir: Path) -> dict:
    """Every rule and impl on an FSDP2 MLP against torch.optim on an identical copy."""
    results = {}
    reference = {}
    for rule in RULES:
        ours_cls, torch_cls = _optim_classes(rule)
        for impl in available_impls():
            foreach = TORCH_FOREACH[impl]
            if (rule, foreach) not in reference:
                model = _shard(_mlp(), mesh)
                _train(model, torch_cls(model.parameters(), foreach=foreach, **OPTIONS[rule]), STEPS)
                reference[rule, foreach] = _full(model)
            model = _shard(_mlp(), mesh)
            opt = ours_cls(model.parameters(), impl=impl, **OPTIONS[rule])
            _train(model, opt, STEPS)
            results["fsdp", rule, impl] = {
                "ours": _full(model),
                "torch": reference[rule, foreach],
                "initial": [p.detach().clone() for p in _mlp().parameters()],
                "state_sharded": _state_sharded_like_params(model, opt),
            }
    return results


def task_placements(mesh, out_dir: Path) -> dict:
    """RMSprop (every state tensor) on DTensors of each placement, against torch.optim."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    g = torch.Generator().manual_seed(1)
    full_p = torch.randn(10, 6, generator=g)
    full_g = [torch.randn(10, 6, generator=g) for _ in range(STEPS)]
    ours_cls, torch_cls = _optim_classes("rmsprop")

    def grad(k, param_code, grad_code):
        if grad_code == "P":
            # rank r holds a summand; the sum over ranks is full_g[k]
            local = full_g[k] / world if rank < world - 1 else full_g[k] - full_g[k] / world * (world - 1)
            return DTensor.from_local(local, mesh, [_placement("P")], run_check=False)
        return distribute_tensor(full_g[k].clone(), mesh, [_placement(grad_code)])

    def run(make_opt, param_code, grad_code):
        w = torch.nn.Parameter(distribute_tensor(full_p.clone(), mesh, [_placement(param_code)]))
        opt = make_opt([w])
        for k in range(STEPS):
            w.grad = grad(k, param_code, grad_code)
            opt.step()
        return w.full_tensor().clone()

    for name, param_code, grad_code in PLACEMENTS:
        for impl in available_impls():
            foreach = TORCH_FOREACH[impl]
            results["placement", name, impl] = {
                "ours": [run(lambda ps: ours_cls(ps, impl=impl, **OPTIONS["rmsprop"]), param_code, grad_code)],
                "torch": [run(lambda ps: torch_cls(ps, foreach=foreach, **OPTIONS["rmsprop"]), param_code, grad_code)],
                "initial": [full_p],
            }
    return results


def task_large(mesh, out_dir: Path) -> dict:
    """The reported crash: a 1024 x 1024 Shard(0) DTensor, RMSprop's defaults, auto and
    fused (Inductor failed on the DTensor subclass), against torch.optim."""
    from torch.distributed.tensor import Shard, distribute_tensor

    g = torch.Generator().manual_seed(2)
    full_p = torch.randn(1024, 1024, generator=g)
    full_g = torch.randn(1024, 1024, generator=g)
    results = {}

    def run(opt_cls, **kw):
        w = torch.nn.Parameter(distribute_tensor(full_p.clone(), mesh, [Shard(0)]))
        opt = opt_cls([w], **kw)
        for _ in range(2):
            w.grad = distribute_tensor(full_g, mesh, [Shard(0)])
            opt.step()
        return w.full_tensor().clone()

    reference = run(torch.optim.RMSprop, foreach=False)
    for impl in ("auto", "fused") if "fused" in available_impls() else ("auto",):
        results["large", impl] = {"ours": [run(impl_torch.RMSprop, impl=impl)], "torch": [reference], "initial": [full_p]}
    return results


def _checkpoint_parts(mesh):
    model = _shard(_mlp(), mesh)
    return model, impl_torch.RMSprop(model.parameters(), **OPTIONS["rmsprop"])


def task_save(mesh, out_dir: Path) -> dict:
    """Train, save model and optimizer with torch.distributed.checkpoint, train on: the
    trajectory a loaded run must continue."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model, opt = _checkpoint_parts(mesh)
    _train(model, opt, CHECKPOINT_STEPS)
    dcp.save(
        {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)},
        checkpoint_id=str(out_dir / "checkpoint"),
    )
    _train(model, opt, CHECKPOINT_STEPS, first=CHECKPOINT_STEPS)
    return {"saved": {"params": _full(model), "state_sharded": _state_sharded_like_params(model, opt)}}


def task_load(mesh, out_dir: Path) -> dict:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model, opt = _checkpoint_parts(mesh)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.load(state, checkpoint_id=str(out_dir / "checkpoint"))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"])
    steps = [float(opt.state[p]["step"]) for p in model.parameters()]
    _train(model, opt, CHECKPOINT_STEPS, first=CHECKPOINT_STEPS)
    return {
        "loaded": {
            "params": _full(model),
            "state_sharded": _state_sharded_like_params(model, opt),
            "steps_at_load": steps,
        }
    }


def task_errors(mesh, out_dir: Path) -> dict:
    """Mixed or mis-laid-out inputs: the error raised, and whether the parameter moved."""
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    rule = impl_torch.RMSprop([torch.zeros(1)]).group_rules()[0]
    results = {}

    def attempt(name, param, grad, state):
        before = param.full_tensor().clone() if hasattr(param, "full_tensor") else param.clone()
        try:
            impl_torch.step(rule, [param], [grad], [state])
            error = None
        except (TypeError, ValueError) as exc:
            error = (type(exc).__name__, str(exc))
        after = param.full_tensor() if hasattr(param, "full_tensor") else param
        results["error", name] = {"error": error, "unchanged": torch.equal(before, after)}

    def sharded():
        return distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)])

    p = sharded()
    attempt("plain-grad", p, torch.ones(4, 3), impl_torch.init_state(rule, p))
    p = sharded()
    state = impl_torch.init_state(rule, p)
    state["square_avg"] = distribute_tensor(torch.zeros(4, 3), mesh, [Replicate()])
    attempt("state-placement", p, sharded(), state)
    partial = DTensor.from_local(torch.ones(4, 3), mesh, [Partial()], run_check=False)
    attempt("partial-param", partial, sharded(), impl_torch.init_state(rule, sharded()))

    # The optimizer: group 0 is fine, group 1's gradient is a plain tensor; nothing moves.
    good, bad = torch.nn.Parameter(sharded()), torch.nn.Parameter(sharded())
    good.grad, bad.grad = sharded(), torch.ones(4, 3)
    opt = impl_torch.RMSprop([{"params": [good]}, {"params": [bad]}])
    before = good.full_tensor().clone()
    try:
        opt.step()
        error = None
    except (TypeError, ValueError) as exc:
        error = (type(exc).__name__, str(exc))
    results["error", "optimizer-group"] = {
        "error": error,
        "unchanged": torch.equal(before, good.full_tensor()) and len(opt.state) == 0,
    }
    return results


TASKS = {
    "errors": task_errors,
    "fsdp": task_fsdp,
    "placements": task_placements,
    "large": task_large,
    "save": task_save,
    "load": task_load,
}


def _rank(rank: int, world: int, out_dir: str, tasks: tuple[str, ...]) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    out_dir = Path(out_dir)
    # two ranks share the machine's cores: one thread each keeps them from oversubscribing
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{out_dir / f'rendezvous-{world}'}", rank=rank, world_size=world
    )
    try:
        mesh = init_device_mesh("cpu", (world,))
        results = {}
        for task in tasks:
            results.update(TASKS[task](mesh, out_dir))
        if rank == 0:
            torch.save(results, out_dir / f"results-{world}.pt")
    finally:
        dist.destroy_process_group()


def spawn(world: int, out_dir: Path, tasks: tuple[str, ...]) -> dict:
    """Run ``tasks`` on ``world`` gloo ranks; rank 0's results (raises what a rank raised)."""
    rendezvous = out_dir / f"rendezvous-{world}"
    if rendezvous.exists():
        os.remove(rendezvous)
    mp.spawn(_rank, args=(world, str(out_dir), tuple(tasks)), nprocs=world, join=True)
    return torch.load(out_dir / f"results-{world}.pt")
