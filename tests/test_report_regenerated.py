"""The committed report is what the report code makes of the committed run.

``python -m bench report`` is run on a copy of ``results/cpu-amd-epyc-2c/benchmark.json``
and ``previous.json`` and every file it writes is compared with the committed one. Two
differences are named, not compared:

- README.md's "Are these numbers current?" section lists the implementation files changed
  between the measured commit and the checkout's HEAD, so it changes with every commit;
- the PNG plots are compared by name only: their bytes depend on matplotlib's and
  FreeType's versions, not on the report code.
"""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

from bench.timing import report

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "cpu-amd-epyc-2c"
FRESHNESS = re.compile(r"## Are these numbers current\?\n.*?(?=\n## )", re.DOTALL)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("regen") / COMMITTED.name
    out.mkdir()
    for name in ("benchmark.json", "previous.json"):
        shutil.copy(COMMITTED / name, out / name)
    assert report.main(["--out", str(out)]) == 0
    return out


def test_every_committed_report_file_is_regenerated(regenerated):
    made = {p.name for p in regenerated.iterdir()}
    committed = {p.name for p in COMMITTED.iterdir() if p.is_file()}
    assert made == committed


@pytest.mark.parametrize("name", ["recommendation.md", "headline.md", "targets.md", "results.csv", "probe.csv",
                                  "training.csv", "benchmark.json", "previous.json"])
def test_generated_file_equals_the_committed_one(regenerated, name):
    assert (regenerated / name).read_text() == (COMMITTED / name).read_text()


def test_readme_equals_the_committed_one_but_for_its_freshness(regenerated):
    made, committed = (FRESHNESS.sub("", (folder / "README.md").read_text()) for folder in (regenerated, COMMITTED))
    assert "Are these numbers current" not in made
    assert made == committed
