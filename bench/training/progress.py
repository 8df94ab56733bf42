"""The experiment's progress bar: tqdm on stderr, quiet in logs.

On a terminal tqdm redraws one line; elsewhere (CI logs, pipes) it writes at most every
5 seconds, so a log gets a handful of lines rather than one per epoch.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, *, enabled: bool = True) -> tqdm:
    """A ``tqdm`` bar of ``total`` epochs; ``enabled=False`` draws nothing."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled,
                mininterval=0.1 if tty else 5.0, dynamic_ncols=tty, ascii=not tty)


def advance(bar, postfix: str) -> None:
    """One epoch done; ``postfix`` (e.g. the loss) shows at the next redraw."""
    bar.set_postfix_str(postfix, refresh=False)
    bar.update(1)
