"""A folder of 100 safetensors shards opened over HTTP, next to the same folder on disk, both
measured in the same run.

    python benchmarks/remote.py [--runs 3]

A local HTTP server with Range support (``tests/core/remote/server.py``) serves a folder of 100
shards and their index. Figures, whole process (``python -m ckpt_gui inspect URL``), medians:
the remote folder with an empty cache, the same again (headers now cached), and the local
folder; with the bytes and requests the server answered. The shards' headers are fetched
concurrently (``remote/open.py``). Goal (issue 19): the remote folder lists in < 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table  # noqa: E402
from benchmarks.startup import cli_fixtures  # noqa: E402
from tests.core.remote.server import serving  # noqa: E402

GOAL_S = 2.0


def inspect(target: str, cache: str) -> float:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ckpt_gui", "inspect", target],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    _, folder = cli_fixtures()
    rows = []
    with serving(folder.parent) as (url, behaviour):
        target = f"{url}/{folder.name}/"
        cold, warm, sent, requests = [], [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as cache:
                behaviour.reset()
                cold.append(inspect(target, cache))
                sent.append(behaviour.sent)
                requests.append(len(behaviour.requests))
                warm.append(inspect(target, cache))
        local = [inspect(str(folder), tempfile.gettempdir()) for _ in range(args.runs)]
    rows.append({"what": "remote folder, empty cache", "s (median)": statistics.median(cold)})
    rows.append({"what": "remote folder, cached headers", "s (median)": statistics.median(warm)})
    rows.append({"what": "baseline: the folder on disk", "s (median)": statistics.median(local)})
    print(f"100 shards over local HTTP: {args.runs} runs, {os.cpu_count()} CPUs")
    print_table(rows)
    kb, count = statistics.median(sent) / 1e3, statistics.median(requests)
    print(f"server: {kb:.0f} kB in {count:.0f} requests")
    value = statistics.median(cold)
    verdict = "met" if value < GOAL_S else "NOT met"
    print(f"goal: remote folder lists in < {GOAL_S} s -> {verdict} ({value:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
