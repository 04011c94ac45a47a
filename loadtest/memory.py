"""Resident memory of a server: its parent process and each process it started (workers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ServerMemory:
    parent_mb: float
    workers_mb: tuple[float, ...]  # every descendant process, largest first

    def describe(self) -> str:
        workers = ", ".join(f"{mb:.0f}" for mb in self.workers_mb) or "none"
        return f"parent {self.parent_mb:.0f} MB; other processes {workers} MB"


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _rss_mb(status: dict[str, str]) -> float:
    return int(status.get("VmRSS", "0 kB").split()[0]) / 1024


def server_memory(root_pid: int) -> ServerMemory:
    """RSS of `root_pid` and of all its descendants (read from /proc: Linux only)."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = _status(int(entry.name))
        except OSError:
            continue  # the process ended meanwhile
        parents[int(entry.name)] = int(status.get("PPid", "0"))
        rss[int(entry.name)] = _rss_mb(status)
    descendants, frontier = [], [root_pid]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        descendants += children
        frontier += children
    return ServerMemory(
        parent_mb=rss.get(root_pid, 0.0),
        workers_mb=tuple(sorted((rss[pid] for pid in descendants), reverse=True)),
    )
