"""The library as users get it: the built wheel, its contents, each framework on its own.

The wheel is built from the checkout without build isolation and installed with
``--no-deps`` into a fresh virtual environment that sees this environment's third-party
packages through a path entry (no downloads), then the README's library examples run from
a directory outside the checkout.
"""

from __future__ import annotations

import pathlib
import site
import subprocess
import sys
import zipfile

import pytest

from tests.readme_blocks import ROOT, python_blocks

INSTALLED = {"adaptbench", "impl_torch", "impl_jax"}
NEVER_INSTALLED = {"datasets", "bench", "tests", "results"}
LIBRARY_BLOCKS = [b for b in python_blocks() if not b.needs_checkout]


def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(out), str(ROOT)])
    (path,) = out.glob("adaptbench-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel_python(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv holding only the wheel, seeing our site-packages' third-party packages."""
    env = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = env / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # A plain path line: the third-party packages become importable, while this
    # environment's own .pth files (the editable install of the checkout) are not run.
    (pathlib.Path(purelib) / "third_party.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)])
    return python


def test_wheel_holds_the_library_and_never_the_harness(wheel):
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == INSTALLED, f"wheel top-level names: {sorted(tops)}"
    assert not tops & NEVER_INSTALLED


@pytest.mark.parametrize("module", sorted(INSTALLED))
def test_installed_packages_import_from_the_wheel(wheel_python, tmp_path, module):
    for name in NEEDS[module]:
        pytest.importorskip(name)
    out = _run([str(wheel_python), "-c", f"import {module}; print({module}.__file__)"], cwd=tmp_path).stdout
    assert "site-packages" in out and str(ROOT) not in out, out


@pytest.mark.parametrize("module", sorted(NEVER_INSTALLED - {"results"}))
def test_harness_names_are_not_importable_outside_the_checkout(wheel_python, tmp_path, module):
    proc = subprocess.run([str(wheel_python), "-c", f"import {module}"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.parametrize("block", LIBRARY_BLOCKS, ids=[b.id for b in LIBRARY_BLOCKS])
def test_readme_library_example_runs_from_the_wheel(wheel_python, tmp_path, block):
    block.skip_unless_installed()
    _run([str(wheel_python), "-c", block.code], cwd=tmp_path)


def test_readme_has_library_examples_for_both_frameworks():
    imported = set().union(*(b.imports for b in LIBRARY_BLOCKS))
    assert {"impl_torch", "impl_jax"} <= imported


# Importing a name set to None in sys.modules raises ImportError: the framework is "absent".
WITHOUT = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"
USES = {
    "impl_torch": "import torch, impl_torch\n"
                  "p = torch.nn.Parameter(torch.ones(3))\n"
                  "opt = impl_torch.RMSprop([p], lr=0.1)\n"
                  "p.grad = torch.ones(3)\n"
                  "opt.step()\n"
                  "assert p.detach().lt(1).all()\n",
    "impl_jax": "import jax.numpy as jnp, optax, impl_jax\n"
                "tx = impl_jax.rmsprop(lr=0.1)\n"
                "x = jnp.ones(3)\n"
                "u, _ = tx.update(jnp.ones(3), tx.init(x), x)\n"
                "assert (optax.apply_updates(x, u) < 1).all()\n",
    "adaptbench": "from adaptbench import rules\n"
                  "import numpy as np\n"
                  "rule = rules.preset('adagrad', 'torch')\n"
                  "p, s = rules.reference.step(rule, np.ones(3), np.ones(3), rules.reference.init_state(rule, np.ones(3)))\n"
                  "assert (p < 1).all()\n",
}
ABSENT = {
    "impl_torch": ("jax", "jaxlib", "optax"),
    "impl_jax": ("torch",),
    "adaptbench": ("torch", "jax", "jaxlib", "optax"),
}
# the framework each package needs: skipped where it is not installed (`make test-torch-latest`)
NEEDS = {"impl_torch": ("torch",), "impl_jax": ("jax", "optax"), "adaptbench": ()}


@pytest.mark.parametrize("package", sorted(USES))
def test_each_package_works_without_the_other_framework(wheel_python, tmp_path, package):
    for name in NEEDS[package]:
        pytest.importorskip(name)
    _run([str(wheel_python), "-c", WITHOUT.format(names=ABSENT[package]) + USES[package]], cwd=tmp_path)
