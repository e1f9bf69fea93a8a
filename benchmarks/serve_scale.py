"""The dashboard over 100,000 experiments in a tree on tmpfs.

1. Indexing at start-up against the ``-l`` metafile scan (``collect_status``) of the
   same tree, in this process. Goal: ratio <= 3 (it reads result files too).
2. ``python -m xhelpers serve TREE`` as a user starts it: seconds until the URL is
   printed (Python, imports and the scan), then server time of the first page of the
   table (goal <= 1 s), of filtering, sorting and paging (goal <= 300 ms each once
   indexed), of an experiment page (goal <= 100 ms), and the server's peak memory
   (goal <= 500 MB).
3. A new metafile written after start-up: seconds until the table shows it.

    python benchmarks/serve_scale.py [--n 100000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from urllib.parse import urlsplit

import xhelpers as xh
from xhelpers.core.fingerprints import fingerprint
from xhelpers.core.results import METAFILE, encode_metafile, write_metafile
from xhelpers.serve.index import TreeIndex, TreeSource


def train(*, lr: int, seed: int) -> None:
    pass


def _make_tree(root: str, n: int) -> xh.ParametrizedExperiments:
    fns = {
        f"sweep/lr={i % 100}/seed={i // 100}": partial(train, lr=i % 100, seed=i // 100)
        for i in range(n)
    }
    group = xh.ParametrizedExperiments("big", fns)
    for i, (name, fn) in enumerate(fns.items()):
        folder = os.path.join(root, "big", name)
        os.makedirs(folder)
        status = "failed" if i % 50 == 7 else "success"
        body = json.dumps(
            {
                "fingerprint": fingerprint(fn),
                "function": "serve_scale.train",
                "arguments": {"args": [], "kwargs": {"lr": str(i % 100), "seed": str(i // 100)}},
                "group": "big",
                "name": name,
                "started": "2026-11-22T00:50:46.781+00:00",
                "ended": "2026-11-22T00:50:46.790+00:00",
                "duration": 0.009,
                "host": f"node{i % 17}",
                "pid": 7315,
                "runs": 1,
                "config": {f"field_{k}": k for k in range(20)},
                "returned": {"acc": (i % 100) / 100 + (i // 100) * 1e-4, "loss": i % 7},
            }
        )[1:-1]
        with open(os.path.join(folder, METAFILE), "w") as f:
            f.write(encode_metafile(status, body))
    # Results written a minute ago, not this second: a folder changed within the last
    # second is read again at every sweep, which would measure only the first moments.
    old = time.time() - 60
    for top, _, _ in os.walk(root):
        os.utime(top, (old, old))
    return group


def _timed_get(host: str, port: int, path: str, cookie: str) -> tuple[float, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    start = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie})
    response = conn.getresponse()
    body = response.read()
    took = time.perf_counter() - start
    conn.close()
    assert response.status == 200, (path, response.status, body[:200])
    return took, body


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(prefix="xh-serve-", dir=tmp)
    proc = None
    try:
        start = time.perf_counter()
        group = _make_tree(root, args.n)
        print(f"tree of {args.n} experiments made in {time.perf_counter() - start:.1f}s")

        start = time.perf_counter()
        rows = group.status(config={"output_directory": root}, config_file=False)
        t_list = time.perf_counter() - start
        assert len(rows) == args.n
        start = time.perf_counter()
        index = TreeIndex([TreeSource("big", os.path.join(root, "big"), group.experiments)])
        index.sweep()
        t_index = time.perf_counter() - start
        assert len(index.groups["big"].rows) == args.n
        start = time.perf_counter()
        index.sweep()
        t_sweep = time.perf_counter() - start
        print(
            f"index: -l scan {t_list:.2f}s, dashboard index {t_index:.2f}s, ratio "
            f"{t_index / t_list:.2f} (goal <= 3); a sweep for changes {t_sweep:.2f}s"
        )
        del index, rows

        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "xhelpers", "serve", root, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        url = ""
        while "http://" not in url:
            url = proc.stdout.readline()
            assert url, proc.stderr.read() if proc.stderr else ""
        t_start = time.perf_counter() - start
        parts = urlsplit(url.strip())
        token = parts.query.split("token=")[1]
        host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        cookie = f"xhelpers-token-{port}={token}"
        print(
            f"serve: URL printed {t_start:.2f}s after the command started "
            f"({t_start / t_list:.2f}x the -l scan above)"
        )

        def get(path: str) -> tuple[float, bytes]:
            return _timed_get(host, port, path, cookie)

        goals = []
        first, body = get("/api/g/big/rows")
        assert json.loads(body)["total"] == args.n
        goals.append(("first page of the table", first, 1.0))
        goals.append(("the table's page", get("/g/big")[0], 0.3))
        for label, path in (
            ("filter by status", "/api/g/big/rows?status=failed"),
            ("filter by name pattern", "/api/g/big/rows?name=sweep/lr=42/*"),
            ("filter by parameter", "/api/g/big/rows?p.seed=7"),
            ("sort by a metric", "/api/g/big/rows?sort=acc&desc=1"),
            ("sort again (cached)", "/api/g/big/rows?sort=acc&desc=1&page=3"),
            ("page 1000", "/api/g/big/rows?page=1000&size=50"),
            ("all filters, sorted", "/api/g/big/rows?status=done&name=*seed=9*&p.lr=3&sort=loss"),
        ):
            goals.append((label, get(path)[0], 0.3))
        name = f"sweep/lr=42/seed={(args.n - 1) // 100 // 2}"
        goals.append(("experiment page", get(f"/g/big/x/{name}")[0], 0.1))
        goals.append(("experiment state", get(f"/api/g/big/state?name={name}")[0], 0.1))
        for label, took, goal in goals:
            verdict = "OK" if took <= goal else "OVER GOAL"
            print(f"  {label}: {took * 1e3:.0f} ms (goal <= {goal * 1e3:.0f} ms) {verdict}")

        folder = os.path.join(root, "big", "sweep", "new")
        os.makedirs(folder)
        written = time.perf_counter()
        write_metafile(folder, {"status": "success", "group": "big", "duration": 1.0})
        deadline = written + 60
        while time.perf_counter() < deadline:
            _, body = get("/api/g/big/rows?name=sweep/new")
            if json.loads(body)["matching"] == 1:
                break
            time.sleep(0.05)
        print(f"a new metafile shown {time.perf_counter() - written:.2f}s after it was written")
        peak = _peak_rss_mb(proc.pid)
        print(f"server peak memory {peak:.0f} MB (goal <= 500) {'OK' if peak <= 500 else 'OVER'}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
