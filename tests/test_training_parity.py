"""The tutorial's experiment trains identically in PyTorch and JAX.

Setting (the tutorial's): Iris (120/15/15, min–max scaled on train), softmax regression
(W ~ N(0, 0.01²), b = 0), mini-batches of 24 in the same NumPy order, the seed presets
``rules.preset(rule, "seed")`` (lr 0.02; RMSprop gamma 0.9; Adadelta rho 0.9, lr 1;
eps 1e-6 inside the roots), 100 epochs = 500 steps, our optimizers
(``impl_torch.optimizer_for`` / ``impl_jax.transformation``), one seed.

Tolerance on the per-epoch loss curves (whole train split and dev split), relative, atol 0:

- float32: rtol 5e-6. Measured: the worst relative difference between the torch and JAX
  curves over seeds 0–7 × the seed's three rules × 101 points was 4.0e-7 (Adam, AdamW and
  SGD, seeds 0–3: 4.3e-7), about 3 float32 ulps —
  the two frameworks reduce the matmul and the log-sum-exp in different orders, so each
  loss differs by a rounding or two, and the difference does not grow over 500 steps
  (the problem is convex and the adaptive denominators damp it). 5e-6 leaves 12x headroom
  for other CPUs/kernels and still sees real differences: a relative change of δ in the
  learning rate moves the curves by 0.3–0.6 δ (measured), so a 1e-4 change (5.8e-5 for
  RMSprop) fails, as ``test_tolerance_detects_a_small_change`` checks.
- float64: rtol 1e-13. Measured worst 6.5e-16 (about 3 float64 ulps); 1e-13 is 150x that
  and detects a 1e-10 relative change in the learning rate. JAX computes in float64 only
  inside ``with jax.enable_x64(True):`` (bench.training.train_runs.x64), never globally.

Accuracy curves may differ by a sample where a prediction sits on a float32 tie (never
observed); float64 accuracies must be equal.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest
import torch

from adaptbench import rules
from bench.training import tutorial_torch
from bench.training.models_torch import Model
from bench.training.train_runs import FRAMEWORKS, RunConfig, max_rel_diff, prepare, run, run_jax

EPOCHS = 100
RULES = list(rules.RULES)
# The rules bench/training/tutorial_torch.py writes out by hand: the seed's own three.
TUTORIAL_RULES = tutorial_torch.RULES
DTYPES = ("float32", "float64")
RTOL = {"float32": 5e-6, "float64": 1e-13}
# Both where both are installed; torch alone where JAX is not (`make test-torch-latest`).
INSTALLED = tuple(fw for fw in FRAMEWORKS if importlib.util.find_spec(fw) is not None)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matrices: one intra-op thread avoids oversubscribing a shared machine (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(rule: str, dtype: str, **kw) -> RunConfig:
    return RunConfig(dataset="iris", model="linear", rule=rule, epochs=EPOCHS, batch_size=24,
                     dtype=dtype, seed=0, **kw)


@functools.lru_cache(maxsize=None)
def histories(rule: str, dtype: str):
    return run(config(rule, dtype), frameworks=INSTALLED)


def test_the_settings_are_the_tutorials():
    assert rules.preset("rmsprop", "seed") == rules.RMSprop(lr=0.02, alpha=0.9, eps=1e-6, eps_in_sqrt=True)
    split, init, order = prepare(config("rmsprop", "float32"))
    assert split.sizes == (120, 15, 15)
    assert [len(b) for b in order[0]] == [24] * 5 and len(order) == EPOCHS
    assert np.all(init["b"] == 0) and 0.005 < init["W"].std() < 0.015


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", RULES)
def test_torch_and_jax_loss_curves_agree_epoch_by_epoch(rule, dtype):
    jax = pytest.importorskip("jax")

    x64_before = bool(jax.config.jax_enable_x64)
    h = histories(rule, dtype)
    assert bool(jax.config.jax_enable_x64) == x64_before, "x64 leaked out of the run"
    t, j = h["torch"], h["jax"]
    assert len(t.train_loss) == len(j.train_loss) == EPOCHS + 1
    # Same starting point: identical weights, data and loss formula.
    np.testing.assert_allclose(t.train_loss[0], j.train_loss[0], rtol=RTOL[dtype], atol=0)
    for name in ("train_loss", "dev_loss"):
        np.testing.assert_allclose(getattr(t, name), getattr(j, name), rtol=RTOL[dtype], atol=0,
                                   err_msg=f"{rule} {dtype} {name}: torch vs jax")
    ties = {"float32": 1, "float64": 0}[dtype]
    for name, n in (("train_acc", 120), ("dev_acc", 15)):
        diff = np.abs(np.subtract(getattr(t, name), getattr(j, name))) * n
        assert np.all(diff <= ties + 1e-9), f"{rule} {dtype} {name} differ by {diff.max()} samples"
    assert abs(t.test_acc - j.test_acc) * 15 <= ties + 1e-9


@pytest.mark.parametrize("dtype", DTYPES)
def test_tolerance_detects_a_small_change(dtype):
    """The tolerance is tight enough to see a tiny change in the learning rate."""
    pytest.importorskip("jax")
    delta = {"float32": 1e-4, "float64": 1e-10}[dtype]
    c = config("rmsprop", dtype, lr=0.02 * (1 + delta))
    split, init, order = prepare(c)
    changed = run_jax(c, split, init, order)
    reference = histories("rmsprop", dtype)["torch"]
    assert max_rel_diff(reference.train_loss, changed.train_loss) > RTOL[dtype]


@pytest.mark.parametrize("rule", RULES)
def test_losses_decrease_substantially(rule):
    for fw, h in histories(rule, "float32").items():
        loss = np.asarray(h.train_loss)
        assert loss[0] == pytest.approx(np.log(3), rel=0.02), "starts near chance: log(3)"
        assert loss[-1] < 0.75 * loss[0], f"{rule}/{fw}"
        assert np.all(loss[1:] < loss[0]), f"{rule}/{fw}: loss went above its start"


def test_rmsprop_reaches_the_tutorials_result():
    """The tutorial's qualitative result: RMSprop fits Iris; test accuracy > 0.8."""
    for fw, h in histories("rmsprop", "float32").items():
        assert h.train_loss[-1] < 0.3 * h.train_loss[0], fw
        assert h.test_acc > 0.8, fw
        assert h.train_acc[-1] > 0.9, fw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", TUTORIAL_RULES)
def test_tutorials_hand_written_loop_follows_our_optimizer(rule, dtype):
    """bench/training/tutorial_torch.py (the eager benchmark baseline) trains like impl_torch."""
    c = config(rule, dtype)
    split, init, order = prepare(c)
    X, y = torch.from_numpy(split.train[0]), torch.from_numpy(split.train[1])
    W = torch.tensor(init["W"], requires_grad=True)
    b = torch.tensor(init["b"], requires_grad=True)
    rule_obj = rules.preset(rule, "seed")
    states = tutorial_torch.init_states(rule_obj, [W, b])
    losses = []
    with torch.no_grad():
        losses.append(float(torch.nn.functional.cross_entropy(X @ W + b, y)))
    for epoch in order:
        for idx in epoch:
            i = torch.from_numpy(idx)
            tutorial_torch.linear_step(rule_obj, W, b, states, X[i], y[i])
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(X @ W + b, y)))
    np.testing.assert_allclose(losses, histories(rule, dtype)["torch"].train_loss, rtol=RTOL[dtype], atol=0)


def test_tutorial_loop_refuses_what_it_does_not_implement():
    with pytest.raises(ValueError, match="momentum"):
        tutorial_torch.init_states(rules.RMSprop(momentum=0.9, eps_in_sqrt=True), [])
    with pytest.raises(ValueError, match="eps_in_sqrt"):
        tutorial_torch.init_states(rules.preset("adagrad", "torch"), [])
    for later in sorted(set(rules.RULES) - set(TUTORIAL_RULES)):
        with pytest.raises(ValueError, match=f"no rule '{later}'"):
            tutorial_torch.init_states(rules.preset(later, "seed"), [])


def test_the_training_benchmark_has_a_tutorial_row_for_the_tutorial_rules_only():
    from bench.training import bench_training

    tutorial = {rule for rule, variant in bench_training.CASES if variant == "torch-tutorial"}
    assert tutorial == set(TUTORIAL_RULES)
    assert {rule for rule, _ in bench_training.CASES} == set(rules.RULES)


def test_models_start_from_the_same_numpy_weights():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from bench.training import models, models_jax

    init = models.init_params("mlp", 4, 3, seed=0)
    tm = Model("mlp", init)
    jp = models_jax.to_params("mlp", init)
    X = np.random.default_rng(0).random((7, 4), dtype=np.float32)
    with torch.no_grad():
        lt = tm(torch.from_numpy(X)).numpy()
    lj = np.asarray(models_jax.apply("mlp", jp, jnp.asarray(X)))
    np.testing.assert_allclose(lt, lj, rtol=1e-6, atol=1e-7)
    tm.W1.data.add_(1.0)  # the model owns a copy
    assert np.all(init["W1"] < 1)


# --------------------------------------------------------------------------- command line


@pytest.fixture
def restore_thread_env(monkeypatch):
    """``bench.training.train.main`` sets XLA_FLAGS and torch's thread count; undo both afterwards."""
    import os

    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_command_line_single_run(tmp_path, capsys, restore_thread_env):
    pytest.importorskip("jax")  # trains both frameworks
    import json

    from bench.training import train

    out = tmp_path / "run.json"
    assert train.main(["--dataset", "iris", "--rule", "adagrad", "--epochs", "3", "--no-progress",
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "torch" in text and "jax" in text and "max relative difference" in text
    data = json.loads(out.read_text())
    assert set(data) == {"torch", "jax"} and len(data["jax"]["train_loss"]) == 4
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("argv", [["--dataset", "mnist"], ["--epochs", "0"], ["--framework", "tf"],
                                  ["--dtype", "float16"], ["--lr", "-1"], ["--out", "x"],
                                  ["--rule", "lamb"], ["--torch-impl", "bogus"]])
def test_command_line_rejects_bad_arguments(argv, capsys, restore_thread_env):
    from bench.training import train

    with pytest.raises(SystemExit) as exc:
        train.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_sweep_writes_table_plots_and_curves(tmp_path, capsys, restore_thread_env):
    pytest.importorskip("jax")  # trains both frameworks
    import json

    from bench.training import train

    assert train.main(["--sweep", "--out", str(tmp_path), "--dataset", "iris", "--model", "linear",
                       "--rule", "rmsprop", "--rule", "momentum", "--epochs", "2", "--no-progress"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["histories.json", "loss_iris.png", "training.md"], names
    md = (tmp_path / "training.md").read_text()
    for needle in ("python -m bench train --sweep", "commit:", "versions:", "threads: torch", "min–max", "*train* split only",
                   "| iris | linear | rmsprop | 2 |", "| iris | linear | momentum | 2 |", "torch.optim.SGD"):
        assert needle in md, needle
    assert (tmp_path / "loss_iris.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((tmp_path / "histories.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0]["torch"]["config"]["rule"] == "rmsprop"
