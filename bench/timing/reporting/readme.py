"""``python -m bench readme [--check]``: README.md's blocks that copy a report's files, kept by cog.

A block in README.md reads (cogapp's markers, in HTML comments)

    <!-- [[[cog copy("results/<machine>/<file>.md", "<heading>") ]]] -->
    ...
    <!-- [[[end]]] -->

and holds the named file: the whole file without its title line, or, with a heading, the
body under that heading, its headings moved two levels down (``SHIFT``). The command runs
``cog -r README.md`` with ``copy`` imported; ``--check`` changes nothing and exits non-zero
when a block is stale (the test suite runs it).
"""

from __future__ import annotations

import argparse
import re

from bench.machine import REPO_ROOT

SHIFT = 2
PROLOGUE = "from bench.timing.reporting.readme import copy"


def _heading(line: str) -> tuple[int, str] | None:
    m = re.match(r"(#+) (.*)", line)
    return (len(m.group(1)), m.group(2).strip()) if m else None


def extract(text: str, section: str | None = None) -> str:
    """The copied part of a generated file's ``text`` (see the module docstring); a
    ``section`` the file lacks raises ``ValueError``."""
    lines = text.rstrip("\n").split("\n")
    if section is None:
        lines = lines[1:] if lines and _heading(lines[0]) else lines
    else:
        start = next((i for i, line in enumerate(lines) if (h := _heading(line)) and h[1] == section), None)
        if start is None:
            raise ValueError(f"no heading {section!r}")
        level = _heading(lines[start])[0]
        end = next((i for i in range(start + 1, len(lines)) if (h := _heading(lines[i])) and h[0] <= level),
                   len(lines))
        lines = lines[start + 1:end]
    shifted = ["#" * (h[0] + SHIFT) + " " + h[1] if (h := _heading(line)) else line for line in lines]
    return "\n".join(shifted).strip("\n") + "\n"


def copy(path: str, section: str | None = None) -> None:
    """Inside a cog block: write ``extract`` of the file at ``path`` (relative to the
    repository) between blank lines, so that Markdown sees it apart from the markers."""
    import cog

    cog.out("\n" + extract((REPO_ROOT / path).read_text(), section) + "\n")


def main(argv=None) -> int:
    from cogapp import Cog

    parser = argparse.ArgumentParser(prog="python -m bench readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail when a block is stale")
    parser.add_argument("--readme", default=str(REPO_ROOT / "README.md"), help="the file (default: the repository's)")
    args = parser.parse_args(argv)
    mode = ["--check", "--check-fail-msg", "run `python -m bench readme`"] if args.check else ["-r"]
    return Cog().main(["cog", *mode, "-p", PROLOGUE, args.readme])
