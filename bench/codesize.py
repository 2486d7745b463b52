"""The code's size and version, from git: lines of *.py now (the working tree) and at a commit."""
from __future__ import annotations

import subprocess

from rig import ROOT

BEFORE = "22c4c63"  # the last commit before issue 10


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True, timeout=60).stdout


def lines_now(d: str) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def lines_at(commit: str, d: str) -> int:
    names = [n for n in _git("ls-tree", "-r", "--name-only", commit, "--", d).decode().split() if n.endswith(".py")]
    return sum(_git("show", f"{commit}:{n}").count(b"\n") for n in names)


def lines(dirs: tuple[str, ...], commit: str = BEFORE) -> dict[str, tuple[int, int]]:
    """Directory → (lines at ``commit``, lines now), as ``wc -l`` counts them."""
    return {d: (lines_at(commit, d), lines_now(d)) for d in dirs}


def git_describe() -> str:
    try:
        head = _git("rev-parse", "--short", "HEAD").decode().strip()
        dirty = _git("status", "--porcelain", "--", "pipeline", "rules", "templates").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"commit {head or '?'}" + (" + uncommitted changes under pipeline/, rules/ or templates/" if dirty else "")
