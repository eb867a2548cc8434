"""paper:PAPER/TASK: the repository holds none of the papers' data; tasks come from the pinned
upstream files over real HTTP (a loopback server), checked, cached and converted as build.py does, or
from a local copy that build.py writes from snapshots of the repositories. The checks against the real
upstream files run when PROMPTGYM_PAPER_SNAPSHOTS names local copies of the three repositories."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from functools import partial
from pathlib import Path

import pytest

from promptgym.data import load_dataset
from promptgym.data import papers
from promptgym.data.download import no_download
from promptgym.data.papers import PaperTask, SourceFile, git_blob_sha
from promptgym.errors import DataError

from support import FileServer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "data"
SNAPSHOTS = os.environ.get("PROMPTGYM_PAPER_SNAPSHOTS", "")
needs_snapshots = pytest.mark.skipif(
    not SNAPSHOTS, reason="set PROMPTGYM_PAPER_SNAPSHOTS=owner/repo=PATH,... to local copies of "
                          "keirp/automatic_prompt_engineer, microsoft/LMOps and mingkaid/rl-prompt")


def _build_module():
    spec = importlib.util.spec_from_file_location("paper_build", DATA / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _rows(ds) -> list[tuple]:
    return [(e.id, e.input, e.targets, e.choices) for e in ds.examples]


# ---------------------------------------------------------------------------------------------
# No data in the repository


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_git_tracks_only_readme_and_build_py_in_benchmarks_data():
    """No file from the papers' repositories (nor rows made from them) is committed; what build.py
    writes into the checkout's benchmarks/data/PAPER/ is ignored."""
    assert _git("ls-files", "benchmarks/data").stdout.split() == ["benchmarks/data/README.md",
                                                                  "benchmarks/data/build.py"]
    for spec in papers.available():
        assert _git("check-ignore", "-q", f"benchmarks/data/{spec}.jsonl").returncode == 0, spec
    assert _git("check-ignore", "-q", "benchmarks/data/README.md").returncode == 1


def test_readme_names_every_task_its_commit_and_whether_the_licences_allow_redistribution():
    text = (DATA / "README.md").read_text()
    assert "This repository holds no data files from the papers' repositories" in text
    for task in papers.TASKS.values():
        match = re.search(rf"^\| `paper:{re.escape(task.spec)}` \| \d+ \| \d+ \| [^|]+ \| (yes|no) \|$",
                          text, flags=re.M)
        assert match, f"benchmarks/data/README.md has no row for paper:{task.spec}"
        assert match.group(1) == ("yes" if task.redistributable else "no"), task.spec
        assert task.commit in text, f"README.md does not name the commit of paper:{task.spec}"
    assert sum(t.redistributable for t in papers.TASKS.values()) == 16  # APE's own tasks, nothing else
    assert not [t for t in papers.TASKS.values() if t.redistributable and not t.spec.startswith("ape/")]


def test_nothing_says_a_task_is_shipped_here():
    for path in (ROOT / "src/promptgym/data/papers.py", DATA / "build.py", DATA / "README.md"):
        assert "shipped" not in path.read_text().lower(), path


def test_names_and_unknown_tasks():
    assert "ape/antonyms" in papers.available() and len(papers.available()) == 28
    with pytest.raises(DataError, match=r"^paper:ape/nope: no such task \(ape has: active_to_passive, "):
        load_dataset("paper:ape/nope")
    with pytest.raises(DataError, match=r"^paper:nope/x: no such task \(papers: ape, protegi, rlprompt\)$"):
        load_dataset("paper:nope/x")
    with pytest.raises(DataError, match="give a task"):
        load_dataset("paper:")


# ---------------------------------------------------------------------------------------------
# Converters on small upstream-shaped files


def _ape_file(examples: dict) -> bytes:
    return json.dumps({"metadata": {"num_examples": len(examples)},
                       "examples": {str(i + 1): e for i, e in enumerate(examples.values())}}).encode()


ANTONYMS_EXECUTE = _ape_file({k: {"input": k, "output": v} for k, v in
                              [("hot", "cold"), ("up", "down"), ("big", "small")]})
ANTONYMS_INDUCE = _ape_file({k: {"input": k, "output": v} for k, v in
                             [("wet", "dry"), ("old", "new"), ("hot", "cool"), ("fast", "slow"), ("in", "out")]})


def test_ape_converter_puts_the_test_rows_first_and_keeps_each_input_once():
    data, where = {"execute": ANTONYMS_EXECUTE, "induce": ANTONYMS_INDUCE}, {"execute": "e", "induce": "i"}
    keep, rest = papers.convert_ape("antonyms", data, where)
    assert [r["id"] for r in keep] == ["execute-1", "execute-2", "execute-3"]
    assert [r["input"] for r in rest] == ["wet", "old", "fast", "in"]  # "hot" again is dropped
    task = PaperTask(spec="t/antonyms", repo="a/b", commit=COMMIT, files={}, redistributable=False,
                     convert=partial(papers.convert_ape, "antonyms"))
    assert task.rows(data, where) == keep + rest  # every row, nothing sampled


def test_protegi_and_rlprompt_converters_use_the_papers_label_words():
    liar = {"train": b'{"label": 1, "text": "Statement: a"}\n{"label": 0, "text": "Statement: b"}\n',
            "test": b'{"label": 0, "text": "Statement: c"}\n'}
    keep, rest = papers.convert_liar(liar, {"train": "train.jsonl", "test": "test.jsonl"})
    assert [(r["id"], r["target"]) for r in keep + rest] == [("test-0", "No"), ("train-0", "Yes"), ("train-1", "No")]
    assert all(r["choices"] == ["No", "Yes"] for r in keep + rest)

    # ETHOS: scores in (0, 0.7) are dropped, above 0.4 is hate speech, the first 200 kept rows are test
    lines = [f"text {i};{[0.0, 0.5, 0.8][i % 3]}" for i in range(330)] + ['"quoted; text";1.0']
    keep, rest = papers.convert_ethos({"data": "\n".join(lines).encode()}, {"data": "ethos.csv"})
    assert len(keep) == 200 and keep[0] == {"id": "test-0", "input": "text 0", "target": "No", "choices": ["No", "Yes"]}
    assert keep[1]["id"] == "test-2" and keep[1]["target"] == "Yes"  # ids are the file's row indices
    assert rest[-1]["input"] == "quoted; text" and len(keep) + len(rest) == 221

    tsv = {"train": b"sentence\tlabel\ngood fun .\t1\n", "dev": b"sentence\tlabel\nawful .\t0\n",
           "test": b'sentence\tlabel\r\n"he said "" hi "" ."\t1\r\nbad .\t0\r\n'}  # CRLF and pandas quoting
    keep, rest = papers.convert_rlprompt(tsv, {k: k for k in tsv})
    assert [(r["id"], r["input"], r["target"]) for r in keep + rest] == [
        ("test-0", 'he said " hi " .', "great"), ("test-1", "bad .", "terrible"),
        ("train-0", "good fun .", "great"), ("dev-0", "awful .", "terrible")]


@pytest.mark.parametrize("convert, data, message", [
    (partial(papers.convert_ape, "antonyms"), {"execute": b"{oops", "induce": ANTONYMS_INDUCE}, r"e: not valid JSON"),
    (partial(papers.convert_ape, "antonyms"), {"execute": _ape_file({"a": {"input": "a"}}), "induce": ANTONYMS_INDUCE},
     r"e: example 1: field 'output' must be non-empty text"),
    (papers.convert_liar, {"train": b'{"label": 2, "text": "x"}\n', "test": b""}, r"test: no rows"),
    (papers.convert_liar, {"train": b'{"label": 2, "text": "x"}\n', "test": b'{"label": 1, "text": "y"}'},
     r"train:1: expected an object with 'label' 0 or 1"),
    (papers.convert_rlprompt, {"train": b"text\tlabel\n", "dev": b"", "test": b"sentence\tlabel\nx\t1\n"},
     r"train: expected the header 'sentence<TAB>label'"),
    (papers.convert_rlprompt, {"train": b"sentence\tlabel\nx\t1\n", "dev": b"sentence\tlabel\nx\t1\n",
                               "test": b"sentence\tlabel\nx\t7\n"}, r"test:2: expected a sentence and a label 0 or 1"),
    (papers.convert_ethos, {"data": b"a;b;c\n"}, r"data: row 1: expected 2 cells"),
])
def test_converters_name_the_file_and_row_of_bad_input(convert, data, message):
    with pytest.raises(DataError, match=message):
        convert(data, {k: {"execute": "e", "induce": "i"}.get(k, k) for k in data})


# ---------------------------------------------------------------------------------------------
# Downloads over real HTTP (a loopback server laid out as OWNER/REPO/COMMIT/PATH)


@pytest.fixture
def server(monkeypatch, tmp_path):
    srv = FileServer()
    monkeypatch.setenv(papers.URL_ENV, srv.url)
    monkeypatch.setenv(papers.DATA_ENV, str(tmp_path / "no-local-copy"))
    yield srv
    srv.close()


COMMIT = "c0ffee" + "0" * 34


@pytest.fixture
def toy(monkeypatch, server):
    """A task in the registry served by the loopback server, pinned to the served files' blobs."""
    task = PaperTask(spec="toy/antonyms", repo="someone/seed-paper", commit=COMMIT,
                     files={"induce": SourceFile("raw/induce/antonyms.json", git_blob_sha(ANTONYMS_INDUCE)),
                            "execute": SourceFile("raw/execute/antonyms.json", git_blob_sha(ANTONYMS_EXECUTE))},
                     convert=partial(papers.convert_ape, "antonyms"), redistributable=False)
    monkeypatch.setitem(papers.TASKS, task.spec, task)
    server.files[f"/someone/seed-paper/{COMMIT}/raw/induce/antonyms.json"] = ANTONYMS_INDUCE
    server.files[f"/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json"] = ANTONYMS_EXECUTE
    return task


def test_download_checks_caches_and_a_second_load_makes_no_request(toy, server):
    ds = load_dataset("paper:toy/antonyms")
    assert [e.id for e in ds.examples] == ["execute-1", "execute-2", "execute-3",  # the paper's test rows
                                           "induce-1", "induce-2", "induce-4", "induce-5"]  # every other input
    assert sorted(server.requests) == [f"/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json",
                                       f"/someone/seed-paper/{COMMIT}/raw/induce/antonyms.json"]
    cached = papers.cache_path(toy, "induce")
    assert cached.read_bytes() == ANTONYMS_INDUCE
    assert cached.parts[-7:] == ("papers", "someone", "seed-paper", COMMIT, "raw", "induce", "antonyms.json")
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temporary file left

    again = load_dataset("paper:toy/antonyms")
    assert len(server.requests) == 2  # the cache answered
    assert [(e.id, e.input, e.targets) for e in again.examples] == [(e.id, e.input, e.targets) for e in ds.examples]
    assert again.examples[0].where.endswith("raw/execute/antonyms.json: execute-1")


def test_a_missing_file_is_one_line_naming_every_source_tried(toy, server, tmp_path):
    del server.files[f"/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json"]
    with pytest.raises(DataError) as err:
        load_dataset("paper:toy/antonyms")
    message = str(err.value)
    assert "\n" not in message and message.startswith("paper:toy/antonyms: could not load it: ")
    assert f"no local copy ({tmp_path / 'no-local-copy' / 'toy' / 'antonyms.jsonl'}" in message
    assert f"not in the download cache ({papers.cache_path(toy, 'induce')})" in message
    assert f"{server.url}/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json: 404: no such pinned file there; " in message
    assert message.endswith("; " + papers.offline_hint(toy))
    assert not papers.cache_path(toy, "induce").exists()  # nothing is cached from a task that failed


def test_the_offline_command_in_the_message_works(toy, server, tmp_path, monkeypatch):
    """The message's build.py command, run on a clone of the repository, gives a local copy that loads
    with no network, with the rows a download gives."""
    downloaded = _rows(load_dataset("paper:toy/antonyms"))
    shutil.rmtree(Path(os.environ["PROMPTGYM_HOME"]) / "downloads")
    server.close()
    with pytest.raises(DataError) as err:
        load_dataset("paper:toy/antonyms")
    command = shlex.split(re.search(r"run `([^`]+)`", str(err.value)).group(1))
    assert command[:2] == ["python", "benchmarks/data/build.py"]
    assert f"{papers.DATA_ENV}=DIR" in str(err.value)
    clone = tmp_path / "clone"  # a folder holding the pinned files at their paths
    for role, f in toy.files.items():
        (clone / f.path).parent.mkdir(parents=True, exist_ok=True)
        (clone / f.path).write_bytes({"induce": ANTONYMS_INDUCE, "execute": ANTONYMS_EXECUTE}[role])
    argv = [a.replace("=CLONE", f"={clone}") if a.endswith("=CLONE") else str(tmp_path / "dir") if a == "DIR" else a
            for a in command[2:]]
    assert _build_module().main(argv) == 0
    monkeypatch.setenv(papers.DATA_ENV, str(tmp_path / "dir"))
    assert _rows(load_dataset("paper:toy/antonyms")) == downloaded


def test_a_file_that_is_not_the_pinned_one_is_refused(toy, server):
    server.files[f"/someone/seed-paper/{COMMIT}/raw/induce/antonyms.json"] = ANTONYMS_INDUCE + b" "
    with pytest.raises(DataError, match=r"raw/induce/antonyms\.json: not the pinned file \(git blob [0-9a-f]{12}, "
                                        rf"expected {git_blob_sha(ANTONYMS_INDUCE)[:12]}\); to load it offline, "):
        load_dataset("paper:toy/antonyms")
    assert not papers.cache_path(toy, "execute").exists()


def test_bad_json_that_arrives_is_named_and_not_cached(toy, server, monkeypatch):
    monkeypatch.setitem(toy.files, "execute", SourceFile("raw/execute/antonyms.json", None))  # no blob to check
    server.files[f"/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json"] = b'{"examples": {"1": '
    with pytest.raises(DataError, match=rf"^{re.escape(server.url)}/someone/seed-paper/{COMMIT}/raw/execute/"
                                        r"antonyms\.json: not valid JSON"):
        load_dataset("paper:toy/antonyms")
    assert not papers.cache_path(toy, "execute").exists() and not papers.cache_path(toy, "induce").exists()


def test_a_bad_tsv_that_arrives_is_named(monkeypatch, server):
    task = PaperTask(spec="toy/sst-2", repo="someone/rl", commit=COMMIT,
                     files={r: SourceFile(f"d/{r}.tsv", None) for r in ("train", "dev", "test")},
                     convert=papers.convert_rlprompt, redistributable=False)
    monkeypatch.setitem(papers.TASKS, task.spec, task)
    for role in ("train", "dev"):
        server.files[f"/someone/rl/{COMMIT}/d/{role}.tsv"] = b"sentence\tlabel\nfine .\t1\n"
    server.files[f"/someone/rl/{COMMIT}/d/test.tsv"] = b"sentence\tlabel\nfine .\tpositive\n"
    with pytest.raises(DataError, match=r"d/test\.tsv:2: expected a sentence and a label 0 or 1$"):
        load_dataset("paper:toy/sst-2")
    server.files[f"/someone/rl/{COMMIT}/d/test.tsv"] = b"sentence\tlabel\nfine .\t1\nbad .\t0\n"
    ds = load_dataset("paper:toy/sst-2")
    assert ds.labels == ("terrible", "great") and all(e.target in e.choices for e in ds.examples)


def test_real_tasks_fetch_from_the_pinned_commit_and_check_the_blob(server):
    """The registry's own URLs: OWNER/REPO/COMMIT/PATH under the base URL; a file that is not the
    pinned one (here: not the real SST-2 test set) is refused before anything is cached."""
    task = papers.TASKS["rlprompt/sst-2"]
    for role, f in task.files.items():
        server.files[f"/{task.repo}/{task.commit}/{f.path}"] = b"sentence\tlabel\nfine .\t1\n"
    with pytest.raises(DataError, match=r"not the pinned file"):
        load_dataset("paper:rlprompt/sst-2")
    assert server.requests[0] == (f"/mingkaid/rl-prompt/{papers.RLPROMPT_COMMIT}/examples/few-shot-classification/"
                                  "data/16-shot/sst-2/16-100/train.tsv")
    ethos = papers.TASKS["protegi/ethos"]
    assert ethos.url("https://raw.githubusercontent.com", "data") == (
        "https://raw.githubusercontent.com/microsoft/LMOps/5d6a4db613531f6cfcaa0a330233c6f30f4c6d69/"
        "prompt_optimization/data/ethos/ethos_ishate_binary_shuf.csv")
    assert not list(Path(os.environ["PROMPTGYM_HOME"]).glob("downloads/papers/**/*.tsv"))


def test_unreachable_server_and_a_bad_base_url(toy, server, monkeypatch):
    server.close()
    with pytest.raises(DataError, match=r"raw/(induce|execute)/antonyms\.json: .*(refused|reset|closed)"):
        load_dataset("paper:toy/antonyms")
    monkeypatch.setenv(papers.URL_ENV, "example.org")
    with pytest.raises(DataError, match=r"unknown url type.*set PROMPTGYM_PAPER_URL to a base URL"):
        load_dataset("paper:toy/antonyms")


def test_a_changed_cache_file_is_fetched_again(toy, server):
    load_dataset("paper:toy/antonyms")
    papers.cache_path(toy, "execute").write_bytes(b"edited")
    assert len(load_dataset("paper:toy/antonyms")) == 7
    assert len(server.requests) == 3 and server.requests[-1].endswith("/raw/execute/antonyms.json")
    assert papers.cache_path(toy, "execute").read_bytes() == ANTONYMS_EXECUTE


def test_a_local_copy_comes_first_and_no_download_is_respected(toy, server, monkeypatch, tmp_path):
    with no_download(), pytest.raises(DataError, match=r"^paper:toy/antonyms: not on this machine: no local copy"
                                                       r".*; to load it offline, clone https://github.com/someone/"):
        load_dataset("paper:toy/antonyms")
    assert server.requests == []
    local = tmp_path / "mine"
    (local / "toy").mkdir(parents=True)
    (local / "toy" / "antonyms.jsonl").write_text('{"id": "x-1", "input": "hot", "target": ["cold", "chilly"]}\n')
    monkeypatch.setenv(papers.DATA_ENV, str(local))
    ds = load_dataset("paper:toy/antonyms")
    assert [(e.id, e.targets) for e in ds.examples] == [("x-1", ("cold", "chilly"))] and server.requests == []


# ---------------------------------------------------------------------------------------------
# build.py


def _toy_snapshot(toy: PaperTask, folder: Path) -> Path:
    """A plain folder holding the toy task's pinned files at their paths."""
    for role, f in toy.files.items():
        (folder / f.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / f.path).write_bytes({"induce": ANTONYMS_INDUCE, "execute": ANTONYMS_EXECUTE}[role])
    return folder


def test_build_is_deterministic_and_writes_what_the_loader_reads(toy, tmp_path, server):
    build = _build_module()
    snapshot = _toy_snapshot(toy, tmp_path / "snapshot")
    outs = []
    for run in ("a", "b"):
        summaries, changed = build.build({toy.repo: snapshot}, tmp_path / run, [toy])
        outs.append((tmp_path / run / "toy" / "antonyms.jsonl").read_bytes())
        assert summaries[0]["rows"] == 7 and summaries[0]["evaluation"] == 3 and len(changed) == 1
    assert outs[0] == outs[1]
    assert build.build({toy.repo: snapshot}, tmp_path / "a", [toy], check=True)[1] == []
    from_file = [json.loads(line) for line in outs[0].decode().splitlines()]
    loaded = load_dataset("paper:toy/antonyms")  # downloaded and converted: the same rows
    assert [(r["id"], r["input"], r["target"]) for r in from_file] == \
           [(e.id, e.input, e.target) for e in loaded.examples]

    (snapshot / toy.files["induce"].path).write_bytes(ANTONYMS_INDUCE + b"\n")
    with pytest.raises(build.BuildError, match=r"raw/induce/antonyms\.json is not the file at c0ffee"):
        build.build({toy.repo: snapshot}, tmp_path / "c", [toy])


def test_build_reads_a_git_snapshot_at_the_pinned_commit(monkeypatch, server, tmp_path):
    """A clone (here a bare one) whose newest commit is not the pinned one: the pinned files are read."""
    work = tmp_path / "work"
    _toy_snapshot(PaperTask(spec="x/y", repo="a/b", commit=COMMIT, redistributable=False, convert=papers.convert_liar,
                            files={"induce": SourceFile("raw/induce/antonyms.json", None),
                                   "execute": SourceFile("raw/execute/antonyms.json", None)}), work)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    git = partial(subprocess.run, check=True, capture_output=True, text=True, env=env, cwd=work)
    git(["git", "init", "-q"])
    git(["git", "add", "-A"])
    git(["git", "commit", "-q", "-m", "pinned"])
    pinned = git(["git", "rev-parse", "HEAD"]).stdout.strip()
    (work / "raw/induce/antonyms.json").write_bytes(b"{}")
    git(["git", "commit", "-q", "-am", "newer"])
    git(["git", "clone", "-q", "--bare", str(work), str(tmp_path / "bare.git")])
    task = PaperTask(spec="toy/antonyms", repo="someone/seed-paper", commit=pinned, redistributable=False,
                     files={"induce": SourceFile("raw/induce/antonyms.json", git_blob_sha(ANTONYMS_INDUCE)),
                            "execute": SourceFile("raw/execute/antonyms.json", git_blob_sha(ANTONYMS_EXECUTE))},
                     convert=partial(papers.convert_ape, "antonyms"))
    monkeypatch.setitem(papers.TASKS, task.spec, task)
    build = _build_module()
    assert build.main(["--snapshot", f"someone/seed-paper={tmp_path / 'bare.git'}", "--task", "toy",
                       "--out", str(tmp_path / "out")]) == 0
    monkeypatch.setenv(papers.DATA_ENV, str(tmp_path / "out"))
    assert len(load_dataset("paper:toy/antonyms")) == 7 and server.requests == []
    monkeypatch.setattr(task, "commit", "0" * 40)
    with pytest.raises(build.BuildError, match=r"bare\.git: no raw/induce/antonyms\.json at 000000000000"):
        build.build({task.repo: tmp_path / "bare.git"}, tmp_path / "out", [task])


def test_check_reports_a_changed_a_missing_and_a_left_over_file(toy, tmp_path, capsys):
    build = _build_module()
    snapshot = _toy_snapshot(toy, tmp_path / "snapshot")
    out = tmp_path / "out"
    argv = ["--snapshot", f"{toy.repo}={snapshot}", "--task", "toy/antonyms", "--out", str(out)]
    target = out / "toy" / "antonyms.jsonl"
    assert build.main([*argv, "--check"]) == 1 and not target.exists()  # missing; nothing written
    assert str(target) in capsys.readouterr().err
    assert build.main(argv) == 0 and build.main([*argv, "--check"]) == 0
    target.write_text(target.read_text().replace('"cold"', '"warm"'))
    assert build.main([*argv, "--check"]) == 1 and str(target) in capsys.readouterr().err
    assert build.main(argv) == 0 and '"cold"' in target.read_text()
    stale = out / "toy" / "gone.jsonl"
    stale.write_text("{}\n")
    assert build.build({toy.repo: snapshot}, out, [toy], check=True)[1] == [str(stale)]
    assert stale.exists()
    assert build.build({toy.repo: snapshot}, out, [toy])[1] == [str(stale)] and not stale.exists()
    assert build.main(["--task", "toy/antonyms", "--out", str(out)]) == 2  # no snapshot given
    assert "no snapshot of someone/seed-paper (--snapshot someone/seed-paper=PATH" in capsys.readouterr().err
    assert build.main([*argv, "--task", "toy/nope"]) == 2
    assert "paper:toy/nope: no such task" in capsys.readouterr().err


def test_the_checkout_folder_is_the_local_copy_when_no_folder_is_set(toy, server, tmp_path, monkeypatch):
    if Path(papers.__file__).resolve().is_relative_to(ROOT):  # running from this checkout
        assert papers.checkout_data_dir() == DATA
    build = _build_module()
    checkout = tmp_path / "checkout" / "benchmarks" / "data"
    build.build({toy.repo: _toy_snapshot(toy, tmp_path / "snapshot")}, checkout, [toy])
    monkeypatch.delenv(papers.DATA_ENV)
    monkeypatch.setattr(papers, "checkout_data_dir", lambda: checkout)
    assert len(load_dataset("paper:toy/antonyms")) == 7 and server.requests == []
    monkeypatch.setattr(papers, "checkout_data_dir", lambda: None)  # an installed wheel: no checkout
    server.close()
    with pytest.raises(DataError, match=r"could not load it: no local copy \(\$PROMPTGYM_PAPER_DATA is not set\); "):
        load_dataset("paper:toy/antonyms")


# ---------------------------------------------------------------------------------------------
# The real upstream files (PROMPTGYM_PAPER_SNAPSHOTS)

EXECUTE_ROWS = {"ape/cause_and_effect": 25, "ape/common_concept": 15, "ape/informal_to_formal": 15}


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    """Every task built by build.py from the real repositories, once: (folder, summaries by spec)."""
    if not SNAPSHOTS:
        pytest.skip("PROMPTGYM_PAPER_SNAPSHOTS is not set")
    build = _build_module()
    snapshots = build.parse_snapshots([s for s in SNAPSHOTS.split(",") if s.strip()])
    out = tmp_path_factory.mktemp("paper-data")
    summaries, changed = build.build(snapshots, out, build.select([]))
    assert len(changed) == len(papers.TASKS)
    return out, {s["spec"]: s for s in summaries}, snapshots


@needs_snapshots
def test_build_py_makes_every_task_and_check_agrees_and_the_readme_table_is_its_table(real_build, capsys):
    out, summaries, _ = real_build
    build = _build_module()
    assert build.main(["--out", str(out), "--check", "--table"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.strip()
    readme = (DATA / "README.md").read_text()
    assert printed in readme  # the README's task table is exactly what build.py prints
    assert printed == build.table(list(summaries.values()))
    assert sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.glob("*/*.jsonl")) == papers.available()


@needs_snapshots
@pytest.mark.parametrize("spec", sorted(papers.TASKS))
def test_every_task_built_from_the_real_files_loads_offline(spec, real_build, monkeypatch):
    out, summaries, _ = real_build
    monkeypatch.setenv(papers.DATA_ENV, str(out))
    monkeypatch.setenv(papers.URL_ENV, "http://127.0.0.1:9")  # any attempt to fetch would fail loudly
    ds = load_dataset(f"paper:{spec}")
    assert ds.source == f"paper:{spec}" and ds.name == spec and len(ds) == summaries[f"paper:{spec}"]["rows"]
    ids, inputs = [e.id for e in ds.examples], [e.input for e in ds.examples]
    assert len(set(ids)) == len(ids) and len(set(inputs)) == len(inputs)  # one input never in two splits
    assert all(e.targets and all(t.strip() for t in e.targets) for e in ds.examples)
    if spec.startswith("ape/"):
        assert all(re.fullmatch(r"(execute|induce)-\d+", i) for i in ids)
        tests = sum(i.startswith("execute-") for i in ids)
        assert tests == EXECUTE_ROWS.get(spec, 100) and all(i.startswith("execute-") for i in ids[:tests])
        assert not ds.is_choice and ds.description is None  # free text, as in APE; the neutral start
    else:
        assert ds.labels == (("No", "Yes") if spec.startswith("protegi/") else ("terrible", "great"))
        assert ds.description is None or spec.startswith("protegi/")
        assert all(re.fullmatch(r"(test|train|dev)-\d+", i) for i in ids)
    assert not list(Path(os.environ["PROMPTGYM_HOME"]).glob("downloads/papers/**/*"))
    plain = load_dataset(str(out / f"{spec}.jsonl"))  # the file is plain promptgym JSONL too (a plain
    # file with few distinct targets gets them as its choices; paper: keeps APE's tasks free text)
    assert [(e.input, e.targets) for e in plain.examples] == [(e.input, e.targets) for e in ds.examples]


@needs_snapshots
def test_a_download_of_the_real_files_gives_the_rows_build_py_wrote(real_build, monkeypatch, tmp_path):
    """The pinned files served from a file:// mirror (laid out as the raw URL is): each task loads with
    the rows of the local copy, and a second pass reads the cache the first one filled."""
    out, _, snapshots = real_build
    build = _build_module()
    mirror = tmp_path / "mirror"
    for task in papers.TASKS.values():
        for role, blob in build.task_files(task, snapshots).items():
            path = mirror / task.repo / task.commit / task.files[role].path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
    monkeypatch.setenv(papers.URL_ENV, mirror.as_uri())
    for spec in papers.available():
        monkeypatch.setenv(papers.DATA_ENV, str(tmp_path / "none"))
        downloaded = _rows(load_dataset(f"paper:{spec}"))
        monkeypatch.setenv(papers.DATA_ENV, str(out))
        assert downloaded == _rows(load_dataset(f"paper:{spec}")), spec
    shutil.rmtree(mirror)
    monkeypatch.setenv(papers.DATA_ENV, str(tmp_path / "none"))
    assert len(load_dataset("paper:rlprompt/mr")) == 2064  # from the cache


@needs_snapshots
def test_the_real_answers_keep_every_accepted_answer(real_build, monkeypatch):
    monkeypatch.setenv(papers.DATA_ENV, str(real_build[0]))
    rhymes = load_dataset("paper:ape/rhymes")
    first = rhymes.examples[0]
    assert first.input == "compete" and first.target == "neat" and "street" in first.targets
    concept = {e.input: e.targets for e in load_dataset("paper:ape/common_concept").examples}
    # every item (APE's own loader drops the last one), every accepted concept
    assert concept["rock climbing, elevators, helicopters"] == ("involve vertical movement.", "involve going up.")
    cause = load_dataset("paper:ape/cause_and_effect").examples
    assert all(e.target in e.input and e.input.startswith("Sentence 1: ") for e in cause)
    firsts = {e.input.split(" Sentence 2: ")[0] == f"Sentence 1: {e.target}" for e in cause}
    assert firsts == {True, False}  # the seeded order puts the cause first in some pairs, second in others
    ethos = load_dataset("paper:protegi/ethos").examples
    assert [e.id for e in ethos[:200]][-1].startswith("test-") and ethos[200].id.startswith("train-")


def test_a_file_url_mirror_works(toy, server, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    for role, f in toy.files.items():
        path = mirror / toy.repo / toy.commit / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes({"induce": ANTONYMS_INDUCE, "execute": ANTONYMS_EXECUTE}[role])
    monkeypatch.setenv(papers.URL_ENV, mirror.as_uri())
    assert len(load_dataset("paper:toy/antonyms")) == 7 and server.requests == []
