"""Timing servers for the "sharded" family (bench/timing/bench_sharded.py).

A sharded configuration needs its own process: JAX's host device count is fixed by
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` before jax starts, and torch's
FSDP2 needs one process per gloo rank. Each server reads one command per line on stdin
and answers one JSON line on stdout (``READY`` first), so the benchmark in the pytest
process drives it step by step:

- ``setup {json}``: build the case (replaces the previous one), warm it up (compile),
  answer facts about it (bytes per device, placement).
- ``step``: one timed step, answered with its seconds as measured *inside* the server
  (JAX: call to ``block_until_ready``; torch: rank 0 between two barriers).
- ``probe``: one timed in-place ``a + b`` over the same devices and per-device working set
  (the roofline, as bench/timing/probe.py's, sharded like the step).
- ``quit``.

``python -m bench.timing.sharded_worker jax`` (devices from XLA_FLAGS) or
``python -m bench.timing.sharded_worker torch RANK WORLD INIT_FILE`` (rank 0 talks; the
other ranks follow its commands through a gloo broadcast).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

SEED = 20240611
PROBE_ACCESSES = 3


def host_arrays(n: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng([SEED, n])
    return [rng.standard_normal(n, dtype=np.float32) for _ in range(count)]


def _reply(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- JAX ---------------------------------------------------------------------------------


class JaxServer:
    def __init__(self):
        import jax

        self.jax = jax
        self.case = None
        self.probe = None

    def setup(self, cfg: dict) -> dict:
        import jax
        import optax
        from jax.sharding import NamedSharding, PartitionSpec

        import impl_jax
        from bench.timing import cases

        self.case = self.probe = None
        devices = jax.devices()[: cfg["devices"]]
        mesh = jax.make_mesh((len(devices),), ("x",), devices=devices)
        sharding = NamedSharding(mesh, PartitionSpec("x"))
        n = cfg["n"]
        p_np, g_np = host_arrays(n, 2)
        params = jax.device_put(p_np, sharding)
        grads = jax.device_put(g_np, sharding)
        rule = cases.rule_for(cfg["rule"])
        if cfg["impl"] == "make_step":
            step = impl_jax.make_step(rule)
            state = impl_jax.init(rule, params)
        else:
            from bench.peers import optax_peer

            tx, _ = optax_peer(rule)
            state = tx.init(params)

            def update(params, state, grads):
                updates, state = tx.update(grads, state, params)
                return optax.apply_updates(params, updates), state

            step = jax.jit(update, donate_argnums=(0, 1))
        carry = [params, state]

        def fn():
            carry[0], carry[1] = step(carry[0], carry[1], grads)
            jax.block_until_ready(carry)

        for _ in range(3):
            fn()
        # the probe: a += b with the step's per-device working set, sharded the same way
        arrays = 2 + len(rule.state_names)
        probe_n = -(-n * arrays // 2)
        probe_n += -probe_n % len(devices)
        add = jax.jit(lambda a, b: a + b, donate_argnums=0)
        pa = [jax.device_put(np.ones(probe_n, np.float32), sharding)]
        pb = jax.device_put(np.full(probe_n, 1e-3, np.float32), sharding)

        def probe():
            pa[0] = add(pa[0], pb)
            pa[0].block_until_ready()

        for _ in range(3):
            probe()
        self.case, self.probe = fn, probe
        compiles = step._cache_size() if hasattr(step, "_cache_size") else None
        return {
            "devices": len(devices),
            "device_kind": devices[0].device_kind,
            "platform": devices[0].platform,
            "shard_elements": int(carry[0].addressable_shards[0].data.size),
            "state_sharding": str(jax.tree.leaves(carry[1])[-1].sharding.spec),
            "compiles_after_warmup": compiles,
            "probe_elements": probe_n,
            "probe_bytes": PROBE_ACCESSES * 4 * probe_n,
            "arrays": arrays,
        }

    def timed(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def serve_jax() -> None:
    import jax

    server = JaxServer()
    _reply({"ready": True, "devices": len(jax.devices())})
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "setup":
            _reply(server.setup(json.loads(arg)))
        elif cmd == "step":
            _reply(server.timed(server.case))
        elif cmd == "probe":
            _reply(server.timed(server.probe))
        elif cmd == "quit":
            return
        else:
            _reply({"error": f"unknown command {cmd!r}"})


# --- torch FSDP2 -------------------------------------------------------------------------

class TorchServer:
    def __init__(self, rank: int, world: int, init_file: str):
        import torch
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        # The ranks share the CPUs this process may use (the session's thread setting is
        # inherited as CPU affinity): an equal part each, at least one thread.
        self.threads = max(1, len(os.sched_getaffinity(0)) // world) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(self.threads)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
        self.torch, self.dist = torch, dist
        self.rank, self.world = rank, world
        self.mesh = init_device_mesh("cpu", (world,))
        self.case = self.probe = None

    def setup(self, cfg: dict) -> dict:
        import torch
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor

        import impl_torch
        from bench.timing import cases
        from bench.timing.torch_cases import torch_optim

        self.case = self.probe = None
        n = cfg["n"]
        p_np, g_np = host_arrays(n, 2)
        model = torch.nn.Module()
        model.weight = torch.nn.Parameter(torch.from_numpy(p_np.copy()))
        fully_shard(model, mesh=self.mesh)
        p = model.weight
        full_grad = torch.from_numpy(g_np)
        local = full_grad.chunk(self.world)[self.rank].clone()  # FSDP2's Shard(0) split
        p.grad = DTensor.from_local(local, self.mesh, p.placements, shape=p.shape, stride=p.stride())
        rule = cases.rule_for(cfg["rule"])
        impl = cfg["impl"]
        if impl.startswith("torch.optim-"):
            cls, kwargs = torch_optim(rule)
            opt = cls([p], foreach=impl == "torch.optim-foreach", **kwargs)
        else:
            opt = impl_torch.optimizer_for(rule, [p], impl=impl.removeprefix("ours-torch-"))
        for _ in range(3):
            opt.step()
        self.case = opt.step
        arrays = 2 + len(rule.state_names)
        probe_n = -(-p.to_local().numel() * arrays // 2)
        a, b = torch.ones(probe_n), torch.full((probe_n,), 1e-3)
        self.probe = lambda: a.add_(b)
        return {
            "devices": self.world,
            "device_kind": "cpu (gloo rank)",
            "threads_per_rank": self.threads,
            "platform": "cpu",
            "shard_elements": int(p.to_local().numel()),
            "state_sharding": str(next(t for k, t in opt.state[p].items() if k != "step").placements),
            "probe_elements": probe_n * self.world,
            "probe_bytes": PROBE_ACCESSES * 4 * probe_n * self.world,
            "arrays": arrays,
        }

    def timed(self, fn) -> float:
        self.dist.barrier()
        t0 = time.perf_counter()
        fn()
        self.dist.barrier()
        return time.perf_counter() - t0

    def command(self, cmd: str | None) -> str:
        """Rank 0's command (and its argument) sent to every rank."""
        box = [cmd]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]


def serve_torch(rank: int, world: int, init_file: str) -> None:
    server = TorchServer(rank, world, init_file)
    if rank == 0:
        _reply({"ready": True, "devices": world})
        lines = iter(sys.stdin)
    try:
        while True:
            line = server.command(next(lines, "quit").strip() if rank == 0 else None)
            cmd, _, arg = line.partition(" ")
            if cmd == "setup":
                out = server.setup(json.loads(arg))
            elif cmd == "step":
                out = server.timed(server.case)
            elif cmd == "probe":
                out = server.timed(server.probe)
            elif cmd == "quit":
                return
            else:
                out = {"error": f"unknown command {cmd!r}"}
            if rank == 0:
                _reply(out)
    finally:
        server.dist.destroy_process_group()


def main(argv: list[str]) -> None:
    if argv[:1] == ["jax"]:
        serve_jax()
    elif argv[:1] == ["torch"] and len(argv) == 4:
        serve_torch(int(argv[1]), int(argv[2]), argv[3])
    else:
        raise SystemExit("usage: python -m bench.timing.sharded_worker jax | torch RANK WORLD INIT_FILE")


if __name__ == "__main__":
    main(sys.argv[1:])
