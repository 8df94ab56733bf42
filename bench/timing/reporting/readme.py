"""``python -m bench readme [--check]``: the README's blocks that are copies of generated files.

A block in README.md between

    <!-- generated from results/<machine>/<file>.md[#<heading>] by `python -m bench readme` -->
    ...
    <!-- end of generated block -->

is the named file of a report: the whole file without its title line, or with ``#<heading>``
the body under that heading, its headings moved two levels down (``SHIFT``). ``--check``
changes nothing and exits 1 when a block is stale (the test suite runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench.machine import REPO_ROOT
BEGIN = re.compile(r"<!-- generated from (?P<src>[^#\s]+)(?:#(?P<section>[^>]+?))? by `python -m bench readme` -->\n")
END = "<!-- end of generated block -->"
SHIFT = 2


class ReadmeError(Exception):
    """A marker without its end, or a file or heading that does not exist."""


def _heading(line: str) -> tuple[int, str] | None:
    m = re.match(r"(#+) (.*)", line)
    return (len(m.group(1)), m.group(2).strip()) if m else None


def extract(text: str, section: str | None) -> str:
    """The copied part of a generated file's ``text`` (see the module docstring)."""
    lines = text.rstrip("\n").split("\n")
    if section is None:
        if lines and _heading(lines[0]):
            lines = lines[1:]
    else:
        start = next((i for i, line in enumerate(lines) if (h := _heading(line)) and h[1] == section), None)
        if start is None:
            raise ReadmeError(f"no heading {section!r}")
        level = _heading(lines[start])[0]
        end = next((i for i in range(start + 1, len(lines))
                    if (h := _heading(lines[i])) and h[0] <= level), len(lines))
        lines = lines[start + 1:end]
    shifted = ["#" * (h[0] + SHIFT) + " " + h[1] if (h := _heading(line)) else line for line in lines]
    return "\n".join(shifted).strip("\n") + "\n"


def render(readme: str, root: Path = REPO_ROOT) -> str:
    """``readme`` with every generated block replaced by its file's current content."""
    out, pos = [], 0
    for m in BEGIN.finditer(readme):
        if m.start() < pos:
            continue
        end = readme.find(END, m.end())
        if end < 0:
            raise ReadmeError(f"{m.group(0).strip()}: no {END!r} after it")
        try:
            body = extract((root / m.group("src")).read_text(), m.group("section"))
        except OSError as exc:
            raise ReadmeError(f"{m.group('src')}: cannot read ({exc.strerror or exc})") from None
        except ReadmeError as exc:
            raise ReadmeError(f"{m.group('src')}: {exc}") from None
        out += [readme[pos:m.end()], "\n", body, "\n"]
        pos = end
    out.append(readme[pos:])
    return "".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    parser.add_argument("--readme", default=str(REPO_ROOT / "README.md"), help="the README to update (default: the repository's)")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    current = path.read_text()
    try:
        wanted = render(current)
    except ReadmeError as exc:
        print(f"bench readme: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != current:
            print(f"bench readme: {path} has stale generated blocks; run `python -m bench readme`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        path.write_text(wanted)
        print(f"bench readme: updated {path}")
    return 0
