"""Study results as Optuna artifacts: where the store is, what is attached, and never twice."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from study_helpers import nosplug, write_config

from nosplug.search import ranking
from nosplug.search.api import create_search
from nosplug.search.kind import BEST_COUNT, publish_best
from nosplug.study import artifacts, studies
from nosplug.study import optuna_adapter as oa
from nosplug.study.storage import (
    ArtifactStoreError,
    PrefixedArtifactStore,
    artifacts_url,
    open_artifact_store,
)
from nosplug.study.worker import Worker


def _journal(tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'studies' / 'j.log'}"


def _attached_in(study, store) -> dict[tuple[int | None, str], str]:
    out: dict[tuple[int | None, str], str] = {}
    holders = [(None, None), *((t.number, t) for t in study.get_trials(deepcopy=False))]
    for number, trial in holders:
        for m in artifacts.listed(study, trial):
            assert (number, m.filename) not in out, f"{m.filename} attached twice to {number}"
            with store.open_reader(m.artifact_id) as f:
                out[(number, m.filename)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ----------------------------------------------------------------------------- where the store is
def test_the_artifact_store_is_configured_like_the_storage(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOSPLUG_ARTIFACTS", raising=False)
    monkeypatch.delenv("NOSPLUG_STORAGE", raising=False)
    assert artifacts_url() == str(Path("nosplug-studies") / "artifacts")  # beside the default journal
    assert artifacts_url(None, "journal:/x/runs.log") == "/x/artifacts"
    assert artifacts_url(None, "sqlite:////x/s.db") == "/x/artifacts"  # one local file, like a journal
    for shared in ("postgresql://u@h/db", "redis://h:6379", "mysql://u@h/db", "sqlite:///:memory:"):
        assert artifacts_url(None, shared) is None  # machines share no folder: no default
    assert artifacts_url("s3://b/p", "postgresql://u@h/db") == "s3://b/p"
    monkeypatch.setenv("NOSPLUG_ARTIFACTS", "/elsewhere")
    assert artifacts_url(None, "postgresql://u@h/db") == "/elsewhere"
    assert artifacts_url("/explicit", "journal:/x/runs.log") == "/explicit"


def test_artifact_store_urls_fail_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from nosplug.study import storage

    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactStoreError, match="is not a folder"):
        open_artifact_store(str(tmp_path / "file"))
    with pytest.raises(ArtifactStoreError, match="does not exist"):
        open_artifact_store(str(tmp_path / "typo"), create=False)
    assert not (tmp_path / "typo").exists()
    with pytest.raises(ArtifactStoreError, match="not a folder path or an s3://"):
        open_artifact_store("gs://bucket/x")
    monkeypatch.setattr(storage, "_importable", lambda module: module != "boto3")
    with pytest.raises(ArtifactStoreError, match="needs boto3, which is not installed: pip install boto3"):
        open_artifact_store("s3://bucket/prefix")


def test_an_s3_prefix_is_kept_in_front_of_every_artifact_id(tmp_path: Path) -> None:
    import io

    from optuna.artifacts import FileSystemArtifactStore

    (tmp_path / "runs" / "a").mkdir(parents=True)
    store = PrefixedArtifactStore(FileSystemArtifactStore(tmp_path), "runs/a/")
    store.write("id1", io.BytesIO(b"hello"))
    assert (tmp_path / "runs" / "a" / "id1").read_bytes() == b"hello"
    with store.open_reader("id1") as f:
        assert f.read() == b"hello"
    store.remove("id1")
    assert not (tmp_path / "runs" / "a" / "id1").exists()


# ----------------------------------------------------------------------------- a search's results
@pytest.fixture
def tiny(tmp_path: Path, monkeypatch) -> str:
    """A tiny search created (not run) in a journal under tmp_path; returns the storage URL."""
    monkeypatch.delenv("NOSPLUG_ARTIFACTS", raising=False)
    url = _journal(tmp_path)
    create_search(write_config(tmp_path / "tiny.toml"), storage=url)
    return url


def test_a_finished_search_attaches_its_best_genomes_once_even_when_resumed(tiny: str, tmp_path) -> None:
    from nosplug.export import to_torch_source
    from nosplug.genome.model import Genome
    from nosplug.study import trials as T

    stopped = Worker("tiny", tiny, threads=1, max_trials=3).run()
    assert not stopped.done and not stopped.artifacts  # unfinished: nothing attached yet
    assert not (tmp_path / "studies" / "artifacts").exists()
    done = Worker("tiny", tiny, threads=1).run()  # the resume finishes the search
    assert done.done and "(10 new, 0 already there)" in done.artifacts, done.artifacts
    study = studies.load("tiny", tiny)
    store = artifacts.open_store(tiny)
    first = _attached_in(study, store)
    top = ranking.best(study, BEST_COUNT)
    assert len(top) == 5
    for rank, t in enumerate(top, 1):
        assert {(t.number, f"tiny_best{rank}.json"), (t.number, f"tiny_best{rank}.py")} <= first.keys()
        metas = {m.filename: m for m in artifacts.listed(study, t)}
        with store.open_reader(metas[f"tiny_best{rank}.json"].artifact_id) as f:
            genome = Genome.from_json(f.read().decode())
        evaluated = T.evaluated_genome(t.user_attrs)
        assert genome.to_json() == evaluated.to_json()  # the genome as evaluated, sign flip applied
        with store.open_reader(metas[f"tiny_best{rank}.py"].artifact_id) as f:
            source = f.read().decode()
        fitness = float(t.user_attrs[T.FITNESS])
        assert source == to_torch_source(
            evaluated,
            class_name=f"TinyBest{rank}",
            provenance={"study": "tiny", "rank": rank, "fitness": fitness},
        )
    assert len(first) == 10 and all(number is not None for number, _ in first)
    # run again (a finished study) and once more through the CLI: nothing new, nothing lost
    again = Worker("tiny", tiny, threads=1).run()
    assert "(0 new, 10 already there)" in again.artifacts
    out = nosplug("study", "run", "tiny", "--storage", tiny)
    assert out.returncode == 0, out.stderr
    assert "artifacts: 10 files on 5 trials of study 'tiny'" in out.stdout
    assert _attached_in(studies.load("tiny", tiny), store) == first
    assert len(list((tmp_path / "studies" / "artifacts").iterdir())) == 10


def test_workers_finishing_together_attach_each_file_once(tiny: str) -> None:
    Worker("tiny", tiny, threads=1).run()
    study = studies.load("tiny", tiny)
    for t in study.get_trials(deepcopy=False):  # start from nothing attached
        for m in artifacts.listed(study, t):
            oa.detach_artifact(study, m.artifact_id, t)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            publish_best(studies.load("tiny", tiny), tiny)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(_attached_in(studies.load("tiny", tiny), artifacts.open_store(tiny))) == 10


@pytest.mark.slow
def test_two_worker_processes_attach_each_file_once_and_say_so(tiny: str) -> None:
    out = nosplug("study", "run", "tiny", "--storage", tiny, "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert "artifacts: 10 files on 5 trials of study 'tiny'" in out.stdout  # the parent's line
    assert len(_attached_in(studies.load("tiny", tiny), artifacts.open_store(tiny))) == 10


def test_a_changed_file_replaces_its_older_version(tiny: str, tmp_path: Path) -> None:
    Worker("tiny", tiny, threads=1, max_trials=1).run()
    report = tmp_path / "out" / "report.md"
    report.parent.mkdir()
    for text in ("# first", "# second", "# second"):
        report.write_text(text)
        artifacts.publish_report("tiny", [report], tiny)
    study = studies.load("tiny", tiny)
    store = artifacts.open_store(tiny)
    (meta,) = artifacts.listed(study)
    with store.open_reader(meta.artifact_id) as f:
        assert f.read() == b"# second"
    assert len(list((tmp_path / "studies" / "artifacts").iterdir())) == 1  # the old bytes are deleted


def test_a_failed_upload_is_one_error_and_leaves_no_record(tiny: str, tmp_path: Path, monkeypatch) -> None:
    from optuna.artifacts import FileSystemArtifactStore

    Worker("tiny", tiny, threads=1, max_trials=1).run()
    report = tmp_path / "report.md"
    report.write_text("# r")

    def refuse(self, artifact_id, body):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FileSystemArtifactStore, "write", refuse)
    with pytest.raises(
        artifacts.ArtifactError, match=r"cannot attach report\.md to study 'tiny' .*No space left"
    ):
        artifacts.publish_report("tiny", [report], tiny)
    assert artifacts.listed(studies.load("tiny", tiny)) == []


def test_a_shared_storage_without_an_artifact_store_says_so_and_goes_on(tiny: str) -> None:
    study = studies.load("tiny", tiny)
    out = publish_best(study, "postgresql://u@db.example/nos")  # never contacted: no store
    assert out.line().startswith("artifacts skipped: storage 'postgresql://u@db.example/nos' has no artifact")
    assert "--artifacts DIR" in out.line() and "NOSPLUG_ARTIFACTS" in out.line()
    assert "\n" not in out.line()


def test_an_unusable_artifact_store_is_one_line_and_exit_2(tiny: str, tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    out = nosplug(
        "study", "run", "tiny", "--storage", tiny, "--artifacts", str(tmp_path / "not-a-folder"), "--quiet"
    )
    assert out.returncode == 2
    bad = str(tmp_path / "not-a-folder")
    assert out.stderr.strip().splitlines() == [f"error: artifact store {bad!r} is not a folder"]
    assert studies.load("tiny", tiny).trials == []  # refused before the first evaluation


def test_a_report_is_attached_to_its_study(tiny: str, tmp_path: Path) -> None:
    Worker("tiny", tiny, threads=1).run()
    for _ in range(2):
        out = nosplug("report", "tiny", "--storage", tiny, "--no-baselines", "--out", str(tmp_path / "rep"))
        assert out.returncode == 0, out.stderr
    assert "artifacts: " in out.stdout and "on study 'tiny'" in out.stdout
    study = studies.load("tiny", tiny)
    names = sorted(m.filename for m in artifacts.listed(study))
    assert names == sorted(
        p.name for p in (tmp_path / "rep").iterdir() if p.suffix in (".md", ".html", ".png")
    )
    assert {"report.md", "report.html", "fitness.png", "comparison.png"} <= set(names)
    stored = _attached_in(study, artifacts.open_store(tiny))
    for name in names:
        assert stored[(None, name)] == hashlib.sha256((tmp_path / "rep" / name).read_bytes()).hexdigest()


def test_a_trained_student_is_attached_to_its_amalgamation_run(tmp_path: Path, monkeypatch) -> None:
    from test_amalgamation import TINY_META

    from nosplug.amalgamation.run import create_run, load_run, run

    monkeypatch.delenv("NOSPLUG_ARTIFACTS", raising=False)
    lines = ["version = 1", "[run]", 'name = "am"', "seed = 1", 'problem = "digits_mlp"']
    lines += ["[loss]", 'name = "mean"', "[meta]", *(f"{k} = {json.dumps(v)}" for k, v in TINY_META.items())]
    (tmp_path / "am.toml").write_text("\n".join(lines) + "\n")
    url = f"journal:{tmp_path / 'j.log'}"
    create_run(tmp_path / "am.toml", storage=url, checkpoint_dir=str(tmp_path / "ck"))
    events: list[dict] = []
    for _ in range(2):
        summary = run("am", url, on_event=events.append)
        assert summary["done"]
    lines = [e["line"] for e in events if e["event"] == "artifacts"]
    assert "(2 new, 0 already there)" in lines[0] and "(0 new, 2 already there)" in lines[1]
    study = load_run("am", url)
    stored = _attached_in(study, artifacts.open_store(url))
    assert stored == {
        (None, "student.pt"): hashlib.sha256((tmp_path / "ck" / "student.pt").read_bytes()).hexdigest(),
        (None, "student.json"): hashlib.sha256((tmp_path / "ck" / "student.json").read_bytes()).hexdigest(),
    }
