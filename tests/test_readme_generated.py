"""README.md's generated blocks (``python -m bench readme``) are the report's files, verbatim.

The README copies the committed run's recommendation and targets; these tests make sure
those copies are never typed in or left stale, and that the copying itself is right."""

from __future__ import annotations

import pytest

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
    text = (ROOT / "README.md").read_text()
    assert readme.BEGIN.search(text), "README.md has no generated block"
    assert readme.render(text) == text, "README.md is stale: run `python -m bench readme`"


def test_a_section_is_its_body_with_headings_moved_down():
    body = readme.extract(GENERATED, "cpu, fp32, threads 2 (default)")
    assert body == "| a | b |\n|---|---|\n| 1 | 2 |\n\n##### inner\n\ntext\n"


def test_a_whole_file_loses_its_title():
    body = readme.extract(GENERATED, None)
    assert body.startswith("Intro.\n\n#### cpu, fp32, threads 2 (default)\n")


def test_render_replaces_only_the_blocks(tmp_path):
    (tmp_path / "r.md").write_text(GENERATED)
    src = "before\n<!-- generated from r.md#cpu, fp32, threads 1 (pinned) by `python -m bench readme` -->\nold\n" \
          "<!-- end of generated block -->\nafter\n"
    out = readme.render(src, tmp_path)
    assert out == ("before\n<!-- generated from r.md#cpu, fp32, threads 1 (pinned) by `python -m bench readme` -->\n"
                   "\n| a | b |\n\n<!-- end of generated block -->\nafter\n")
    assert readme.render(out, tmp_path) == out


@pytest.mark.parametrize("src, message", [
    ("<!-- generated from r.md by `python -m bench readme` -->\nx\n", "no '<!-- end of generated block -->'"),
    ("<!-- generated from missing.md by `python -m bench readme` -->\n<!-- end of generated block -->\n", "cannot read"),
    ("<!-- generated from r.md#nope by `python -m bench readme` -->\n<!-- end of generated block -->\n", "no heading 'nope'"),
])
def test_bad_markers_are_errors_naming_the_problem(tmp_path, src, message):
    (tmp_path / "r.md").write_text(GENERATED)
    with pytest.raises(readme.ReadmeError, match=message):
        readme.render(src, tmp_path)
