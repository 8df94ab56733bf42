"""Whether the numbers still describe the code: the commit they were measured at, and the
implementation files changed since then (from git, at the time the report is written)."""

from __future__ import annotations

import subprocess

from bench.machine import REPO_ROOT

WATCHED = ("impl_torch", "impl_jax")


def measured_commit(data: dict) -> tuple[str | None, bool | None]:
    git = ((data.get("machine_info") or {}).get("adaptbench") or {}).get("git") or {}
    commit = git.get("commit") or (data.get("commit_info") or {}).get("id")
    dirty = git.get("dirty") if git.get("dirty") is not None else (data.get("commit_info") or {}).get("dirty")
    return commit, dirty


def changed_since(commit: str, root=REPO_ROOT) -> list[str] | None:
    """Files under ``impl_torch/`` and ``impl_jax/`` that differ between ``commit`` and HEAD
    (``git diff --name-only <commit> HEAD``); None when git or the commit is not at hand."""
    try:
        proc = subprocess.run(["git", "-C", str(root), "diff", "--name-only", commit, "HEAD", "--", *WATCHED],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return [line for line in proc.stdout.splitlines() if line.strip()]


def freshness(data: dict, root=REPO_ROOT) -> list[str]:
    """Markdown lines: the measured commit and what changed in the implementations since."""
    commit, dirty = measured_commit(data)
    out = ["## Are these numbers current?", ""]
    if not commit:
        return out + ["The JSON records no commit: whether the code changed since cannot be told.", ""]
    where = f"`{commit[:12]}`" + (" with uncommitted changes" if dirty else "")
    changed = changed_since(commit, root)
    if changed is None:
        out.append(f"Measured at commit {where}; that commit is not in this checkout (or git is missing), so "
                   "changes since cannot be listed.")
    elif not changed:
        out.append(f"Measured at commit {where}; no file under {' or '.join(f'`{w}/`' for w in WATCHED)} "
                   "has changed between it and the commit this report was written at.")
    else:
        out.append(f"Measured at commit {where}. **{len(changed)} implementation file(s) changed since** "
                   f"(`git diff --name-only {commit[:12]} HEAD -- {' '.join(WATCHED)}`); their numbers may be stale:")
        out += [""] + [f"- `{name}`" for name in changed]
    return out + [""]
