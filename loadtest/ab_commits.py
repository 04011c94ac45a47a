"""A/B of the service at two commits: is a slowdown ours or the machine's?

    python -m loadtest.ab_commits OLD [NEW] [--rounds 3] [--seconds 15] [--clients 32]

Both commits are checked out as git worktrees under `.build/ab/` and served in turn by
`bentoml serve` from this checkout's venv, with the same Bento model (the full-size compiled one
`loadtest.bench` builds), the same wrk load (single-row /predict bodies, `--clients`
connections) and the same warm-up. The order alternates (old, new, then new, old, ...), so a
machine that drifts during the run weighs on both sides alike. Prints each measurement and, per
commit, the median rate and p99; the new commit's median rate over the old one's is the answer.
The worktrees are removed afterwards.

Like for like only when both commits run on the same packages: the script refuses commits whose
`env/requirements.lock` pins a package at two versions (this venv holds one of them); a package
only the new commit pins is named and allowed (the old commit never imports it)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from loadtest.bench import prepare_model
from loadtest.payloads import application_records
from loadtest.processes import ROOT, free_port, running
from loadtest.wrk import BUILD, write_bodies, wrk

WARM_UP_S = 3
LOCK = "env/requirements.lock"


def pins(lock: str) -> dict[str, str]:
    """`name==version` lines of a pip-compile lock: package name -> version."""
    found = {}
    for line in lock.splitlines():
        name, separator, version = line.partition("==")
        if separator and not line.startswith((" ", "#")):
            found[name.strip().lower()] = version.split()[0]
    return found


def order(rounds: int) -> list[str]:
    """old, new, new, old, old, new, ...: each side first as often as the other."""
    sides: list[str] = []
    for index in range(rounds):
        sides += ["old", "new"] if index % 2 == 0 else ["new", "old"]
    return sides


def summary(measured: dict[str, list[dict]]) -> dict[str, float]:
    rates = {
        side: statistics.median(r["requests_per_s"] for r in runs)
        for side, runs in measured.items()
    }
    p99 = {side: statistics.median(r["p99_ms"] for r in runs) for side, runs in measured.items()}
    return {
        "old_requests_per_s": rates["old"],
        "new_requests_per_s": rates["new"],
        "old_p99_ms": p99["old"],
        "new_p99_ms": p99["new"],
        "new_vs_old": rates["new"] / rates["old"],
    }


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    commits = {
        "old": _git("rev-parse", "--short", args.old),
        "new": _git("rev-parse", "--short", args.new),
    }
    old_pins, new_pins = (pins(_git("show", f"{sha}:{LOCK}")) for sha in commits.values())
    changed = sorted(n for n in old_pins.keys() & new_pins.keys() if old_pins[n] != new_pins[n])
    if changed:
        print(
            f"ab_commits: {commits['old']} and {commits['new']} pin different versions of "
            f"{', '.join(changed)} ({LOCK}): this venv can measure only one of them",
            file=sys.stderr,
        )
        return 2
    added = sorted(new_pins.keys() - old_pins.keys())
    if added:  # the old commit never imports what it does not pin
        print(f"ab_commits: {commits['new']} also pins {', '.join(added)}", flush=True)
    env = {
        **os.environ,
        "BENTOML_HOME": str(BUILD / "bench-bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": str(ROOT),
    }
    tags, _, n_features = prepare_model(env)
    work = BUILD / "ab"
    work.mkdir(parents=True, exist_ok=True)
    bodies = write_bodies(
        work / "single-rows.jsonl",
        [{"applications": [r]} for r in application_records(500, n_features)],
    )
    trees = {side: work / sha for side, sha in commits.items()}
    measured: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        for side, tree in trees.items():
            if not tree.exists():
                _git("worktree", "add", "--detach", str(tree), commits[side])
        for index, side in enumerate(order(args.rounds)):
            port = free_port()
            tree = trees[side]
            server_env = {**env, "PYTHONPATH": str(tree), "SCORING_MODEL_TAG": tags["compiled"]}
            command = [sys.executable, "-m", "bentoml", "serve", "service:CreditScoring"]
            command += ["--working-dir", str(tree), "--host", "127.0.0.1", "--port", str(port)]
            log = work / f"{index}-{side}-{commits[side]}.log"
            with running(
                command, f"http://127.0.0.1:{port}/readyz", log, env=server_env, timeout_s=240
            ):
                url = f"http://127.0.0.1:{port}/predict"
                wrk(url, bodies, args.clients, WARM_UP_S, 1)
                result = wrk(url, bodies, args.clients, args.seconds, 1)
            measured[side].append(result)
            print(
                f"{side} {commits[side]}: {result['requests_per_s']:,.0f} req/s, "
                f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}",
                flush=True,
            )
    finally:
        for tree in trees.values():
            if tree.exists():
                _git("worktree", "remove", "--force", str(tree))
    figures = summary(measured)
    print(
        f"median: old {commits['old']} {figures['old_requests_per_s']:,.0f} req/s "
        f"(p99 {figures['old_p99_ms']:.1f} ms), new {commits['new']} "
        f"{figures['new_requests_per_s']:,.0f} req/s (p99 {figures['new_p99_ms']:.1f} ms): "
        f"new/old {figures['new_vs_old']:.2f}x; {args.clients} clients, single rows, "
        f"{args.seconds:g} s each, {args.rounds} rounds alternating"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
