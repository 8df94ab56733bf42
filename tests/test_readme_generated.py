"""README.md's generated blocks (``python -m bench readme``, cog) are the report's files, verbatim.

The README copies the committed run's recommendation and targets; these tests make sure
those copies are never typed in or left stale, and that the copying itself is right."""

from __future__ import annotations

from bench.timing.reporting import readme
from tests.readme_blocks import ROOT

GENERATED = """# Title

Intro.

## cpu, fp32, threads 2 (default)

| a | b |
|---|---|
| 1 | 2 |

### inner

text

## cpu, fp32, threads 1 (pinned)

| a | b |
"""


def test_readme_blocks_equal_the_files_they_copy():
    assert "[[[cog copy(" in (ROOT / "README.md").read_text(), "README.md has no generated block"
    assert readme.main(["--check"]) == 0, "README.md is stale: run `python -m bench readme`"


def test_a_section_is_its_body_with_headings_moved_down():
    body = readme.extract(GENERATED, "cpu, fp32, threads 2 (default)")
    assert body == "| a | b |\n|---|---|\n| 1 | 2 |\n\n##### inner\n\ntext\n"


def test_a_whole_file_loses_its_title():
    body = readme.extract(GENERATED, None)
    assert body.startswith("Intro.\n\n#### cpu, fp32, threads 2 (default)\n")


def _readme(tmp_path, section: str, body: str = "old\n"):
    (tmp_path / "r.md").write_text(GENERATED)
    path = tmp_path / "README.md"
    path.write_text(f'before\n<!-- [[[cog copy("{tmp_path / "r.md"}", "{section}") ]]] -->\n{body}'
                    "<!-- [[[end]]] -->\nafter\n")
    return path


def test_a_stale_block_fails_the_check_and_is_rewritten(tmp_path, capsys):
    path = _readme(tmp_path, "cpu, fp32, threads 1 (pinned)")
    before = path.read_text()
    assert readme.main(["--check", "--readme", str(path)]) != 0
    assert "run `python -m bench readme`" in capsys.readouterr().err
    assert path.read_text() == before
    assert readme.main(["--readme", str(path)]) == 0
    assert path.read_text() == before.replace("old\n", "\n| a | b |\n\n")
    assert readme.main(["--check", "--readme", str(path)]) == 0


def test_a_heading_the_file_lacks_is_an_error_naming_it(tmp_path, capsys):
    path = _readme(tmp_path, "nope")
    before = path.read_text()
    assert readme.main(["--readme", str(path)]) != 0
    assert "no heading 'nope'" in "".join(capsys.readouterr())
    assert path.read_text() == before
