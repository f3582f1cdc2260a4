"""The process tree, read from Linux's /proc: what a command started, and whether it still runs
(for the tests that stop a command and check that nothing it started is left behind)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["descendants", "name", "running"]


def descendants(pid: int) -> list[int]:
    """The process's children, their children, and so on."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def name(pid: int) -> str:
    """The process's command name, lower case ("" once it is gone)."""
    try:
        return (Path(f"/proc/{pid}") / "comm").read_text().strip().lower()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """Whether the process still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
