"""Every result file names the command and the git commit it ran on.

`write_result(path, markdown)` writes a benchmark's table with one line under its title:
the exact command line, the commit (and whether the checkout had uncommitted changes),
the date and the machine's cores."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import subprocess
import sys
from pathlib import Path

from duia_spark.tracking import git_commit

ROOT = Path(__file__).resolve().parent.parent


def _git(*argv: str) -> str:
    try:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def provenance_line() -> str:
    """`Ran: \\`python bench/x.py --flag\\` at commit abc1234 (...), DATE, N cores.`"""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    command = shlex.join(["python", str(script), *sys.argv[1:]])
    commit = git_commit()[:10]
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    state = "with uncommitted changes" if dirty else "clean checkout"
    return (
        f"Ran: `{command}` at commit {commit} ({state}), {dt.date.today()}, {os.cpu_count()} cores."
    )


def write_result(path: Path, markdown: str) -> None:
    """Write `markdown` to `path` with the provenance line after its title line."""
    lines = markdown.splitlines()
    at = 1 if lines and lines[0].startswith("#") else 0
    lines[at:at] = ["", provenance_line()] if at else [provenance_line(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
