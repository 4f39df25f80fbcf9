"""``nosplug dashboard``: optuna-dashboard on a finished study lists its trials and serves its artifacts.

The fast tests talk to the dashboard's HTTP API; the slow one loads the study's pages in a
headless Chromium (a single-page React app: the trial list and the artifacts exist only once
its JavaScript ran) and looks for them in the rendered DOM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from study_helpers import nosplug, write_config

from nosplug.search import ranking
from nosplug.search.api import create_search
from nosplug.search.kind import BEST_COUNT
from nosplug.study import artifacts, studies
from nosplug.study import optuna_adapter as oa
from nosplug.study.worker import Worker

#: The environment without a personal artifact store, so the default (beside the journal) is used.
ENV = {k: v for k, v in os.environ.items() if k != "NOSPLUG_ARTIFACTS"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[str, Path]:
    """A finished tiny search (best genomes attached to their trials) with a report-like file
    attached to the study; returns (storage URL, folder of the uploaded study file)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"journal:{tmp / 'studies' / 'j.log'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("NOSPLUG_ARTIFACTS", raising=False)
        create_search(write_config(tmp / "tiny.toml"), storage=url)
        summary = Worker("tiny", url, threads=1).run()
        assert summary.done and "10 new" in summary.artifacts
        (tmp / "rep").mkdir()
        (tmp / "rep" / "report.md").write_text("# tiny\n\nthe best genome is tiny_best1\n")
        artifacts.publish_report("tiny", [tmp / "rep" / "report.md"], url)
    return url, tmp / "rep"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


@contextlib.contextmanager
def dashboard(url: str, tmp: Path, *options: str) -> Iterator[tuple[str, str]]:
    """Run ``nosplug dashboard tiny`` on a free loopback port until it answers; yield (base URL,
    the study page's address it printed); stop it afterwards whatever happened."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "nosplug",
        "dashboard",
        "tiny",
        "--storage",
        url,
        "--port",
        str(port),
        *options,
    ]
    # files, not pipes: the server logs every request, and a full pipe would block it
    with open(tmp / "dash.out", "w+") as out, open(tmp / "dash.err", "w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=ENV, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    err.seek(0)
                    pytest.fail(f"nosplug dashboard exited with {proc.returncode}: {err.read()}")
                with contextlib.suppress(OSError):
                    _get(f"{base}/api/meta", timeout=2)
                    break
                if time.monotonic() > deadline:
                    pytest.fail("nosplug dashboard did not answer within 60 s")
                time.sleep(0.3)
            out.seek(0)
            printed = out.read()
            yield base, printed
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_dashboard_serves_every_artifact_byte_for_byte(finished, tmp_path: Path) -> None:
    url, rep = finished
    study = studies.load("tiny", url)
    store = artifacts.open_store(url)
    with dashboard(url, tmp_path) as (base, printed):
        page = f"{base}{oa.dashboard_study_path(study)}"
        assert f"optuna-dashboard for study tiny: {page}\n" in printed
        detail = json.loads(_get(f"{base}/api/studies/{page.rsplit('/', 1)[1]}?after=0"))
        listed = {t["number"]: {a["filename"] for a in t["artifacts"]} for t in detail["trials"]}
        # the study's page: its report file, downloaded from the dashboard as it was uploaded
        (meta,) = artifacts.listed(study)
        assert {a["filename"] for a in detail["artifacts"]} == {"report.md"}
        assert (
            _get(base + oa.dashboard_artifact_path(study, meta.artifact_id))
            == (rep / "report.md").read_bytes()
        )
        # each best genome's trial: the dashboard lists its files and serves the stored bytes
        for rank, t in enumerate(ranking.best(study, BEST_COUNT), 1):
            assert listed[t.number] == {f"tiny_best{rank}.json", f"tiny_best{rank}.py"}
            for m in artifacts.listed(study, t):
                with store.open_reader(m.artifact_id) as f:
                    stored = f.read()
                served = _get(base + oa.dashboard_artifact_path(study, m.artifact_id, t))
                assert hashlib.sha256(served).digest() == hashlib.sha256(stored).digest()
        others = set(listed) - {t.number for t in ranking.best(study, BEST_COUNT)}
        assert others and all(not listed[n] for n in others)


def test_dashboard_mistakes_are_one_line(finished, tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib.util

    from nosplug.cli import main

    url, _rep = finished
    out = nosplug("dashboard", "nope", "--storage", url)
    assert out.returncode == 2 and out.stderr.startswith("error: no study named 'nope'"), out.stderr
    out = nosplug("dashboard", "tiny", "--storage", url, "--artifacts", str(tmp_path / "typo"))
    assert out.returncode == 2 and "does not exist" in out.stderr and not (tmp_path / "typo").exists()
    assert len(out.stderr.strip().splitlines()) == 1
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna_dashboard" else real(name, *a)
    )
    assert main(["dashboard", "tiny", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "optuna-dashboard, which is not installed: pip install 'nosplug[dashboard]'" in err
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- in a browser
def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def _rendered(chromium: str, url: str, tmp: Path) -> str:
    """The DOM of ``url`` after its scripts ran (virtual time: no waiting on the wall clock)."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--window-size=1280,3000",  # the trial list renders only the rows in view
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        dom, _ = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):  # its helper processes, should any be left
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return dom.decode()


@pytest.mark.slow
def test_a_browser_shows_the_trial_list_and_the_artifacts(finished, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    url, _rep = finished
    study = studies.load("tiny", url)
    best = ranking.best(study, 1)[0]
    metas = {m.filename: m for m in artifacts.listed(study, best)}
    with dashboard(url, tmp_path) as (_base, printed):
        page = printed.split("optuna-dashboard for study tiny: ", 1)[1].split()[0]
        # the trial list, with the best trial selected: every trial is listed, and the selected
        # trial's artifacts are shown with links to the files the dashboard serves
        dom = _rendered(chromium, f"{page}/trials?numbers={best.number}", tmp_path)
        listed = {int(n) for n in re.findall(r">Trial (\d+)<", dom)}
        numbers = [t.number for t in study.get_trials(deepcopy=False)]
        shown = numbers[:40]  # a virtualised list: what fits the window is rendered
        assert set(shown) <= listed and listed <= set(numbers), f"trial list shows {sorted(listed)}"
        assert best.number in listed
        assert ">Artifacts</h5>" in dom
        for name in ("tiny_best1.json", "tiny_best1.py"):
            href = oa.dashboard_artifact_path(study, metas[name].artifact_id, best)
            assert f'download="{name}" href="{href}"' in dom, f"{name} is not offered for download"
        # the study's own page: its artifacts
        dom = _rendered(chromium, page, tmp_path)
        assert "Study Artifacts" in dom and ">report.md<" in dom
