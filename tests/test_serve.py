"""The dashboard over real HTTP: what it serves, to whom, and what it never does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import run_py, wait_until, write_run_py
from serve_support import TOKEN, get, make_tree, serving

from xhelpers.core import results
from xhelpers.serve.index import TreeIndex, TreeSource
from xhelpers.serve.query import Query, page


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


def api(server: object, path: str) -> dict:  # type: ignore[type-arg]
    status, _, body = get(server, path)  # type: ignore[arg-type]
    assert status == 200, body
    data: dict = json.loads(body)  # type: ignore[type-arg]
    return data


def test_pages_and_their_data(tree: Path) -> None:
    with serving(tree) as server:
        groups = api(server, "/api/groups")["groups"]
        assert groups == [{"name": "sweep", "total": 13, "counts": {"done": 12, "failed": 1}}]
        data = api(server, "/api/g/sweep/rows?size=5&sort=acc&desc=1")
        assert data["total"] == data["matching"] == 13 and len(data["rows"]) == 5
        assert data["columns"]["parameters"] == ["lr", "seed"]
        assert data["columns"]["metrics"] == ["acc", "loss"]
        assert data["rows"][0]["name"] == "lr=0.1/seed=3"  # the best acc first
        failed = api(server, "/api/g/sweep/rows?status=failed")
        assert [r["name"] for r in failed["rows"]] == ["lr=10.0/seed=0"]
        by_param = api(server, "/api/g/sweep/rows?p.lr=1.0&name=*seed=[12]")
        assert [r["name"] for r in by_param["rows"]] == ["lr=1.0/seed=1", "lr=1.0/seed=2"]
        second = api(server, "/api/g/sweep/rows?size=5&page=2")
        assert len(second["rows"]) == 3

        status, _, body = get(server, "/g/sweep/x/lr=10.0/seed=0")
        text = body.decode()
        assert status == 200 and "FloatingPointError: loss is NaN at lr=10.0" in text
        assert "Traceback (most recent call last)" in text and "curve.csv" not in text
        state = api(server, "/api/g/sweep/state?name=lr=10.0/seed%3D0&offset=-1")
        assert state["status"] == "failed" and "too high" in state["log"]["text"]
        assert "Traceback" in state["traceback"]

        status, _, body = get(server, "/g/sweep/f/lr=0.1/seed=0/curve.csv")
        assert status == 200 and b"<td>0.25</td>" in body
        status, headers, body = get(server, "/g/sweep/raw/lr=0.1/seed=0/sample.png")
        assert status == 200 and headers["content-type"] == "image/png"
        assert body.startswith(b"\x89PNG") and "sandbox" in headers["content-security-policy"]
        status, _, body = get(server, "/g/sweep/f/lr=0.1/seed=0/metafile.json")
        assert status == 200 and b"&#34;status&#34;: &#34;success&#34;" in body

        status, _, body = get(server, "/g/sweep/plot?metric=acc&x=lr")
        assert status == 200 and body.count(b'class="point"') == 3  # lr=10 has no acc
        assert b"acc (mean \xc2\xb1 std over seed)" in body
        status, _, body = get(server, "/g/sweep/plot?metric=acc&x=nope")
        assert status == 200 and b"--x &#39;nope&#39;: no such parameter" in body

        status, _, body = get(server, "/g/sweep/diff?a=lr=0.1/seed=0&b=lr=1.0/seed=0")
        assert status == 200 and b'<tr class="differs"><th>lr</th><td>0.1</td><td>1.0</td>' in body
        assert get(server, "/g/sweep/diff?a=lr=0.1/seed=0&b=nope")[0] == 404
        assert get(server, "/g/nope")[0] == 404
        assert get(server, "/g/sweep/x/nope")[0] == 404


def test_token_cookie_and_host(tree: Path) -> None:
    with serving(tree) as server:
        for path in ("/", "/api/groups", "/g/sweep", "/g/sweep/raw/lr=0.1/seed=0/curve.csv"):
            assert get(server, path, token=None)[0] == 403
            assert get(server, path, token="wrong")[0] == 403
            assert get(server, path)[0] == 200
        assert get(server, "/static/dashboard.js", token=None)[0] == 403
        # the token in the URL, on any page: accepted, and held as an HTTP-only cookie
        status, headers, _ = get(server, f"/g/sweep?token={TOKEN}", token=None)
        assert status == 200 and "HttpOnly" in headers["set-cookie"]
        assert headers["set-cookie"].startswith(f"xhelpers-token-{server.port}={TOKEN};")
        assert get(server, "/api/groups?token=wrong", token=None)[0] == 403
        # the Host header names this machine, on whatever port ssh -L forwards from
        for host in ("localhost:9999", "127.0.0.1", "[::1]:8888", f"LOCALHOST:{server.port}"):
            assert get(server, "/", host=host)[0] == 200, host
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.nip.io", ""):
            status, _, body = get(server, "/", host=host)
            assert status == 403 and b"localhost only" in body, host
        # urllib, as a browser would: the printed URL works and nothing else is needed
        with urllib.request.urlopen(server.url, timeout=20) as response:
            assert response.status == 200 and b"sweep" in response.read()


def test_files_only_from_inside_the_tree(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not a result")
    folder = tree / "sweep" / "lr=0.1" / "seed=0"
    os.symlink(outside, folder / "leak.txt")
    os.symlink(tmp_path, folder / "up")
    os.symlink(folder / "curve.csv", folder / "alias.csv")  # a link inside the tree is fine
    with serving(tree) as server:
        for kind in ("raw", "f"):
            base = f"/g/sweep/{kind}"
            assert get(server, f"{base}/lr=0.1/seed=0/alias.csv")[0] == 200
            for path in (
                "../../outside.txt",
                "lr=0.1/seed=0/../../../../outside.txt",
                "lr=0.1/../lr=0.1/seed=0/curve.csv",
                "./lr=0.1/seed=0/curve.csv",
                "lr=0.1//seed=0/curve.csv",
                "/" + str(outside),
                "%2e%2e/%2e%2e/outside.txt",
                "lr=0.1%2fseed=0%2fcurve.csv",
                "lr=0.1%2Fseed=0/curve.csv",
                "..%2f..%2foutside.txt",
                "..%5c..%5coutside.txt",
                "lr=0.1/seed=0/curve.csv%00",
                "lr=0.1/seed=0/leak.txt",
                "lr=0.1/seed=0/up/outside.txt",
                "lr=0.1/seed=0",
                "lr=0.1/seed=0/",
                "lr=0.1/seed=0/nothing",
            ):
                status, _, body = get(server, f"{base}/{path}")
                assert status == 404, (path, status)
                assert b"not a result" not in body
        assert get(server, "/g/..%2f..%2f/raw/outside.txt")[0] == 404
        assert get(server, "/static/../app.py")[0] == 404
        assert get(server, "/static/%2e%2e/app.py")[0] == 404


def test_read_only(tree: Path) -> None:
    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in tree.rglob("*")
            if not p.is_symlink()
        }

    before = snapshot()
    with serving(tree) as server:
        paths = [
            "/",
            "/api/groups",
            "/api/g/sweep/rows",
            "/api/g/sweep/state?name=lr=0.1/seed=0",
            "/g/sweep",
            "/g/sweep/plot",
            "/g/sweep/diff",
            "/g/sweep/x/lr=0.1/seed=0",
            "/g/sweep/f/lr=0.1/seed=0/curve.csv",
            "/g/sweep/raw/lr=0.1/seed=0/curve.csv",
            "/static/dashboard.js",
        ]
        for path in paths:
            assert get(server, path)[0] == 200, path
            assert get(server, path, method="HEAD")[0] == 200, path
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                assert get(server, path, method=method)[0] == 405, (method, path)
    assert snapshot() == before


def test_secrets_stay_out_of_every_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "xoxb-1234-the-slack-token"
    (tmp_path / "config.py").write_text(
        f"import xhelpers as xh\nclass Config(xh.BaseConfig):\n    slacktoken = {secret!r}\n"
    )
    monkeypatch.setenv("XHELPERS_SLACK_TOKEN", "xoxb-from-the-environment")
    tree = make_tree(tmp_path)
    folder = tree / "sweep" / "lr=0.1" / "seed=0"
    meta = json.loads((folder / results.METAFILE).read_text())
    assert meta["config"]["slacktoken"] == "***"  # redacted by the run already
    (folder / "leak.txt").write_text(f"token={secret}; env=xoxb-from-the-environment\n")
    (folder / "settings.json").write_text(json.dumps({"api_key": "k-123456", "lr": 0.1}))
    from xhelpers.serve.server import machine_secrets

    with serving(tree, secrets=machine_secrets(None)) as server:
        for path in (
            "/g/sweep/x/lr=0.1/seed=0",
            "/g/sweep/f/lr=0.1/seed=0/leak.txt",
            "/g/sweep/raw/lr=0.1/seed=0/leak.txt",
            "/g/sweep/f/lr=0.1/seed=0/metafile.json",
            "/g/sweep/f/lr=0.1/seed=0/settings.json",
            "/api/g/sweep/rows",
        ):
            status, _, body = get(server, path)
            assert status == 200, path
            assert secret.encode() not in body and b"xoxb-from-the-environment" not in body
            assert b"k-123456" not in body or path.endswith("/raw/lr=0.1/seed=0/leak.txt")
        _, _, body = get(server, "/g/sweep/raw/lr=0.1/seed=0/leak.txt")
        assert body == b"token=" + b"*" * len(secret) + b"; env=" + b"*" * 25 + b"\n"


def test_index_rereads_only_what_changed(tree: Path) -> None:
    index = TreeIndex([], root=str(tree))
    reads: list[str] = []
    group_cls = type(index)
    assert group_cls is TreeIndex
    index.sweep()
    group = index.groups["sweep"]
    original = group.read_row

    def counting(name: str, stamp: int) -> object:
        reads.append(name)
        return original(name, stamp)

    group.read_row = counting  # type: ignore[method-assign]
    old = time.time() - 60  # folders changed long ago: their times can be trusted
    for path in [tree / "sweep", *(p for p in (tree / "sweep").rglob("*") if p.is_dir())]:
        os.utime(path, (old, old))
    index.sweep()  # those read within the clock's tick at the first sweep: once more
    reads.clear()
    index.sweep()
    assert reads == []
    folder = str(tree / "sweep" / "lr=0.1" / "seed=0")
    meta = results.read_metafile(folder)
    assert meta is not None
    results.write_metafile(folder, {**meta, "status": results.FAILED})
    os.makedirs(tree / "sweep" / "lr=0.5" / "seed=0")
    results.write_metafile(
        str(tree / "sweep" / "lr=0.5" / "seed=0"), {"status": "submitted", "group": "sweep"}
    )
    index.sweep()
    assert sorted(reads) == ["lr=0.1/seed=0", "lr=0.5/seed=0"]
    assert group.rows["lr=0.1/seed=0"].status == "failed"
    assert group.rows["lr=0.5/seed=0"].status == "submitted"
    counts = page(group, Query(statuses=frozenset({"failed"})))
    assert counts["matching"] == 2


def test_registered_groups_and_pending(tmp_path: Path) -> None:
    index = TreeIndex([TreeSource("g", str(tmp_path / "results" / "g"), {"a": None, "b/c": None})])
    index.sweep()
    assert {n: r.status for n, r in index.groups["g"].rows.items()} == {
        "a": "pending",
        "b/c": "pending",
    }


def _start(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    while True:  # the URL is printed once the tree is indexed and the port bound
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        lines.append(line)
        if "http://" in line:
            return proc, line.strip()


def test_serve_a_tree_without_its_run_py_and_stop_with_ctrl_c(tree: Path, tmp_path: Path) -> None:
    proc, url = _start(
        [sys.executable, "-m", "xhelpers", "serve", str(tree), "--port", "0"], tmp_path
    )
    try:
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        with urllib.request.urlopen(url.replace("/?", "/api/groups?"), timeout=20) as response:
            assert json.loads(response.read())["groups"][0]["total"] == 13
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in err
    assert "Traceback" not in err


def test_run_py_serve_every_registered_group(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
        xh.ParametrizedExperiments("first", {"a": ex.no_config, "b": ex.no_config})
        xh.ParametrizedExperiments("second", {"x/y": ex.no_config})
        """,
    )
    assert run_py(tmp_path, "first", "a").returncode == 0
    proc, url = _start([sys.executable, "run.py", "serve", "--port", "0"], tmp_path)
    try:
        with urllib.request.urlopen(url.replace("/?", "/api/groups?"), timeout=20) as response:
            groups = json.loads(response.read())["groups"]
        assert [(g["name"], g["counts"]) for g in groups] == [
            ("first", {"done": 1, "pending": 1}),
            ("second", {"pending": 1}),
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_usage_errors_and_lazy_imports(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xhelpers", "serve", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("Error: ")
    write_run_py(tmp_path, 'xh.ParametrizedExperiments("g", {"a": ex.no_config})')
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['run.py', '--help']\n"
        "try:\n    runpy.run_path('run.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "serve" in out.stdout and out.stdout.strip().endswith("[]")


def test_every_address_only_when_asked_with_a_warning_and_the_token(
    tree: Path, tmp_path: Path
) -> None:
    proc, url = _start(
        [sys.executable, "-m", "xhelpers", "serve", str(tree), "--host", "0.0.0.0", "--port", "0"],
        tmp_path,
    )
    try:
        local = "http://127.0.0.1:" + url.split(":", 2)[2]
        with urllib.request.urlopen(local, timeout=20) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(local.split("?")[0], timeout=20)
        assert refused.value.code == 403
        # any name may reach a server on every address: the token is what guards it
        request = urllib.request.Request(local, headers={"Host": "node17.cluster:8765"})
        with urllib.request.urlopen(request, timeout=20) as response:
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "warning: serving on 0.0.0.0" in err and proc.returncode == 0


def test_running_rows_follow_their_lock_at_quick_sweeps(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "g" / "a"
    folder.mkdir(parents=True)
    lock = results.ExperimentLock(str(folder))
    assert lock.acquire()
    results.write_metafile(str(folder), {"status": results.RUNNING, "group": "g"})
    index = TreeIndex([], root=str(tmp_path / "results"))
    index.sweep()
    assert index.groups["g"].rows["a"].status == "running"
    old = time.time() - 60
    os.utime(folder, (old, old))
    index.sweep()
    lock.release()  # the runner died: its metafile still says running
    index.sweep(full=False)
    assert index.groups["g"].rows["a"].status == "interrupted"
    (tmp_path / "results" / "g" / "b").mkdir()
    results.write_metafile(str(tmp_path / "results" / "g" / "b"), {"status": "failed", "x": 1})
    index.sweep(full=False)  # a new experiment is found by a quick sweep too
    assert index.groups["g"].rows["b"].status == "failed"


def test_sorting_puts_missing_values_last_both_ways(tree: Path) -> None:
    index = TreeIndex([], root=str(tree))
    index.sweep()
    group = index.groups["sweep"]
    up = [r["name"] for r in page(group, Query(sort="acc", size=20))["rows"]]
    down = [r["name"] for r in page(group, Query(sort="acc", desc=True, size=20))["rows"]]
    assert up[-1] == down[-1] == "lr=10.0/seed=0"  # it has no acc
    assert up[:-1] == down[:-1][::-1]
    by_status = [r["status"] for r in page(group, Query(sort="status", desc=True))["rows"]]
    assert by_status == ["failed"] + ["done"] * 12
    # few rows kept: filtered first, then sorted; the same order as sorting all first
    few = Query(sort="acc", desc=True, params={"lr": "0.1"})
    fresh = [r["name"] for r in page(group, few)["rows"]]
    page(group, Query(sort="acc", desc=True))  # now all are sorted, and kept
    assert [r["name"] for r in page(group, few)["rows"]] == fresh
    assert fresh == [f"lr=0.1/seed={s}" for s in (3, 2, 1, 0)]


def test_queued_rows_show_what_the_backend_says_of_their_job(
    tmp_path: Path, slurm_cluster: Any
) -> None:
    """A job cancelled behind its metafile's back reads on the dashboard as ``-l`` reads
    it: the metafile still says submitted, sacct says CANCELLED, both say interrupted."""
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.no_config})')
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_additional_parameters = {'begin': 'now+600'}\n"  # stays pending
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    submitted = run_py(tmp_path, "g", "--slurm", "--no-wait", env=env)
    assert submitted.returncode == 0, submitted.stderr
    folder = tmp_path / "results" / "g" / "a"
    job = str(results.read_metafile(str(folder))["slurm_job_id"])  # type: ignore[index]

    def row() -> dict[str, Any]:
        rows: list[dict[str, Any]] = api(server, "/api/g/g/rows")["rows"]
        return rows[0]

    with serving(tmp_path / "results", jobs_interval=0.2) as server:
        assert row()["status"] == "submitted"
        subprocess.run(["scancel", job], check=True)
        wait_until(lambda: row()["status"] != "submitted", timeout=60, what="the cancel shown")
        shown = row()
    assert results.read_metafile(str(folder))["status"] == "submitted"  # type: ignore[index]
    assert shown["status"] == "interrupted", shown
    listing = run_py(tmp_path, "g", "-l", env=env)
    assert "interrupted" in listing.stdout, listing.stdout  # as -l says
