"""torch's optimizer test database, imported from the installed torch at test time.

``torch.testing._internal.common_optimizers.optim_db`` holds one ``OptimizerInfo`` per
torch.optim class: the constructor configurations torch's own ``test/test_optim.py``
runs (``optim_inputs_func``), the inputs that must raise (``optim_error_inputs_func``)
and the LR schedulers it steps with (``scheduler_inputs``). ``test_optim.py`` itself is
not shipped in the wheel; the database is. Nothing of torch's test code is copied here.

Importing it needs ``expecttest`` (a torch development dependency, in this project's
``dev`` extra); without it the suites using this module are skipped with that reason.
The import also freezes ``torch.backends``' global flags (torch's test harness does so for
its own tests), which this module undoes so that no other test is affected.
"""

from __future__ import annotations

import pytest
import torch

from tests.peer_lookup import ours_torch_class, peer_name, rule_names, torch_class

# The registered rules with a torch.optim peer, by torch.optim's class name: optim_db's
# key for the rule, and the suites' test ids.
RULES = tuple(peer_name(name, "torch") for name in rule_names("torch"))
OURS = {peer_name(name, "torch"): ours_torch_class(name) for name in rule_names("torch")}
TORCH = {peer_name(name, "torch"): torch_class(name) for name in rule_names("torch")}


def load():
    """The installed torch's ``common_optimizers`` module (skips the caller without expecttest)."""
    pytest.importorskip(
        "expecttest",
        reason="torch.testing._internal needs expecttest (pip install -e '.[dev]')",
    )
    frozen = torch.backends.flags_frozen()
    from torch.testing._internal import common_optimizers

    if not frozen:
        # common_utils calls torch.backends.disable_global_flags() at import.
        setattr(torch.backends, "__allow_nonbracketed_mutation_flag", True)
    return common_optimizers


def infos() -> dict:
    """``{"Adagrad": OptimizerInfo, ...}`` for the rules in ``RULES``."""
    db = load().optim_db
    found = {info.name: info for info in db if info.name in RULES}
    assert sorted(found) == sorted(RULES), f"optim_db lacks {set(RULES) - set(found)}"
    return found


def configs(device: str = "cpu", dtype=torch.float32) -> list[tuple[str, str, dict]]:
    """``[(rule, desc, kwargs)]``: every ``optim_inputs_func`` configuration."""
    out = []
    for name, info in infos().items():
        for oi in info.optim_inputs_func(device, dtype):
            out.append((name, oi.desc, dict(oi.kwargs)))
    return out


def error_inputs(name: str, device: str = "cpu", dtype=torch.float32) -> list:
    """The ``ErrorOptimizerInput`` list of ``name`` (fresh tensors on every call)."""
    return list(infos()[name].optim_error_inputs_func(device, dtype))
