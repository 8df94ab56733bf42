"""Options for every pytest run of this checkout (tests/ and bench/).

``--rules-module MODULE`` (repeatable) imports MODULE before collection, so that the rules
it registers (``adaptbench.rules.register``, ``impl_torch.register_rule``,
``impl_jax.register_rule``) are in ``rules.RULES`` when the suites that iterate it are
collected: ``pytest --rules-module my_rules`` runs the parity and device tests and the
benchmark sweep on a user's own rule (docs/adding-a-rule.md). Each xdist worker imports it
too (``pytest_configure`` runs in every process).
"""

from __future__ import annotations

import importlib


def pytest_addoption(parser):
    parser.addoption(
        "--rules-module", action="append", default=[], metavar="MODULE",
        help="import MODULE (dotted name, importable from the repository root) before collection, "
             "so that the rules it registers are tested and benchmarked like the library's",
    )


def pytest_configure(config):
    for name in config.getoption("rules_module"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--rules-module {name!r} cannot be imported: {exc}") from exc
