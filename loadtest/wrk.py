"""The load generator every server is measured with: wrk (Debian package `wrk`) on loopback,
driven by one Lua script that sends bodies from a file round-robin and reports latency
percentiles and statuses as JSON. Shared by the benchmark and its peers' and reasons' figures.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from loadtest.processes import ROOT

BUILD = ROOT / ".build"


BATCH_ROWS = 500


BATCH_CLIENTS = 4


WRK_SCRIPT = """
local bodies = {}
local path = os.getenv("WRK_PATH")
local content_type = os.getenv("WRK_CONTENT_TYPE") or "application/json"
init = function(args)
  if os.getenv("WRK_BINARY") then
    -- one binary body (an Arrow stream holds newlines): the whole file, sent every time
    local file = io.open(os.getenv("WRK_BODIES"), "rb")
    table.insert(bodies, file:read("*a"))
    file:close()
  else
    for line in io.lines(os.getenv("WRK_BODIES")) do table.insert(bodies, line) end
  end
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", path, {["Content-Type"] = content_type}, bodies[i])
end
statuses = {}
local threads = {}
setup = function(thread) table.insert(threads, thread) end
if os.getenv("WRK_DELAY_MS") then
  -- paced clients: each connection pauses this long after every answer (not timed as latency)
  local pause = tonumber(os.getenv("WRK_DELAY_MS"))
  delay = function() return pause end
end
if os.getenv("WRK_COUNT_STATUS") then
  response = function(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end
done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("WRK_STATUS %d %d\\n", status, count))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Measurement:
    server: str
    load: str
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _wrk_script() -> Path:
    """The Lua script, written once per run and atomically: the mixed load runs two wrk at once,
    and a rewrite under one of them left it reading a truncated script (no figures)."""
    script = BUILD / "bench.lua"
    if not script.exists() or script.read_text() != WRK_SCRIPT:
        draft = script.with_suffix(f".{os.getpid()}.tmp")
        draft.write_text(WRK_SCRIPT)
        draft.replace(script)
    return script


def wrk(
    url: str,
    bodies: Path,
    clients: int,
    duration: float,
    rows: int,
    count_status: bool = False,
    delay_ms: int = 0,
    timeout_s: int = 5,
    content_type: str = "",
) -> dict:
    """`content_type` other than JSON: `bodies` is one binary body, sent as that type."""
    script = _wrk_script()
    host, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{round(duration)}s",
            "--timeout",
            f"{timeout_s}s",
            "-s",
            str(script),
            f"http://{host}",
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "WRK_PATH": path,
            "WRK_BODIES": str(bodies),
            **({"WRK_COUNT_STATUS": "1"} if count_status else {}),
            **({"WRK_DELAY_MS": str(delay_ms)} if delay_ms else {}),
            **({"WRK_BINARY": "1", "WRK_CONTENT_TYPE": content_type} if content_type else {}),
        },
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("WRK_JSON"))
    stats = json.loads(line.removeprefix("WRK_JSON "))
    seconds = stats["duration_us"] / 1e6
    if count_status:
        stats["statuses"] = {
            int(code): int(count)
            for _, code, count in (
                x.split() for x in result.stdout.splitlines() if x.startswith("WRK_STATUS")
            )
        }
        return stats
    return {
        "requests_per_s": stats["requests"] / seconds,
        "rows_per_s": stats["requests"] * rows / seconds,
        "p50_ms": stats["p50_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "errors": stats["status_errors"] + stats["socket_errors"],
    }


def write_bodies(path: Path, bodies: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(body) for body in bodies) + "\n")
    return path
