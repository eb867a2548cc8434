"""paper:PAPER/TASK: the shipped tasks load offline; the others come from the pinned upstream files
over real HTTP (a loopback server), are checked, cached and converted the same way build.py does."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from promptgym.data import load_dataset
from promptgym.data import papers
from promptgym.data.papers import PaperTask, SourceFile, git_blob_sha
from promptgym.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "benchmarks" / "data"

# rows shipped in benchmarks/data: every execute row plus induce rows up to 1000, each input once
SHIPPED_ROWS = {
    "ape/active_to_passive": 1000, "ape/antonyms": 1000, "ape/cause_and_effect": 51, "ape/common_concept": 31,
    "ape/diff": 1000, "ape/first_word_letter": 1000, "ape/informal_to_formal": 30, "ape/larger_animal": 1000,
    "ape/letters_list": 1000, "ape/num_to_verbal": 1000, "ape/rhymes": 987, "ape/second_word_letter": 1000,
    "ape/singular_to_plural": 1000, "ape/sum": 1000, "ape/synonyms": 1000, "ape/taxonomy_animal": 1000,
}
EXECUTE_ROWS = {"ape/cause_and_effect": 25, "ape/common_concept": 15, "ape/informal_to_formal": 15}


# ---------------------------------------------------------------------------------------------
# What is shipped


def test_benchmarks_data_holds_exactly_the_shipped_tasks():
    """A task whose licence does not allow shipping it must never land in benchmarks/data."""
    files = sorted(p.relative_to(DATA).with_suffix("").as_posix() for p in DATA.glob("*/*.jsonl"))
    assert files == sorted(SHIPPED_ROWS)
    assert sorted(t.spec for t in papers.TASKS.values() if t.shipped) == sorted(SHIPPED_ROWS)


@pytest.mark.parametrize("spec", sorted(SHIPPED_ROWS))
def test_every_shipped_task_loads_offline(spec, monkeypatch, tmp_path):
    monkeypatch.setenv(papers.URL_ENV, "http://127.0.0.1:9")  # any attempt to fetch would fail loudly
    ds = load_dataset(f"paper:{spec}")
    assert ds.source == f"paper:{spec}" and ds.name == spec
    assert len(ds) == SHIPPED_ROWS[spec]
    assert not ds.is_choice and all(e.choices is None for e in ds.examples)  # free text, as in APE
    assert ds.description is None  # no gold instruction as the start: promptgym's neutral one
    ids = [e.id for e in ds.examples]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"(execute|induce)-\d+", i) for i in ids)
    assert sum(i.startswith("execute-") for i in ids) == EXECUTE_ROWS.get(spec, 100)  # the paper's test rows
    inputs = [e.input for e in ds.examples]
    assert len(set(inputs)) == len(inputs)  # one input never sits in two splits
    assert all(e.targets and all(t.strip() for t in e.targets) for e in ds.examples)
    assert not list(Path(os.environ["PROMPTGYM_HOME"]).glob("downloads/papers/**/*.json"))

    plain = load_dataset(str(DATA / f"{spec}.jsonl"))  # the file is plain promptgym JSONL too
    assert [(e.input, e.targets, e.choices) for e in plain.examples] == \
           [(e.input, e.targets, e.choices) for e in ds.examples]


def test_shipped_answers_keep_every_accepted_answer():
    rhymes = load_dataset("paper:ape/rhymes")
    first = rhymes.examples[0]
    assert first.input == "compete" and first.target == "neat" and "street" in first.targets
    concept = {e.input: e.targets for e in load_dataset("paper:ape/common_concept").examples}
    # every item (APE's own loader drops the last one), every accepted concept
    assert concept["rock climbing, elevators, helicopters"] == ("involve vertical movement.", "involve going up.")
    cause = load_dataset("paper:ape/cause_and_effect").examples
    assert all(e.target in e.input and e.input.startswith("Sentence 1: ") for e in cause)


def test_readme_table_matches_the_shipped_files():
    text = (DATA / "README.md").read_text()
    for spec in papers.available():
        match = re.search(rf"^\| `paper:{re.escape(spec)}` \| (\S+) / (\d+) \|", text, flags=re.M)
        assert match, f"benchmarks/data/README.md has no row for paper:{spec}"
        if spec in SHIPPED_ROWS:
            assert int(match.group(1)) == SHIPPED_ROWS[spec]
        else:
            assert match.group(1) == "-"
    for task in papers.TASKS.values():
        assert task.commit in text, f"README.md does not name the commit of paper:{task.spec}"


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


def test_ape_converter_keeps_the_test_rows_and_samples_the_rest_by_seed():
    data, where = {"execute": ANTONYMS_EXECUTE, "induce": ANTONYMS_INDUCE}, {"execute": "e", "induce": "i"}
    keep, rest = papers.convert_ape("antonyms", data, where)
    assert [r["id"] for r in keep] == ["execute-1", "execute-2", "execute-3"]
    assert [r["input"] for r in rest] == ["wet", "old", "fast", "in"]  # "hot" again is dropped
    rows = papers.sample_rows(keep, rest, cap=5, key="k")
    assert rows[:3] == keep and len(rows) == 5
    assert rows == papers.sample_rows(keep, list(rest), cap=5, key="k")  # same seed, same rows
    assert papers.sample_rows(keep, rest, cap=2, key="k") == keep  # the test rows are never cut
    assert papers.sample_rows(keep, rest, cap=None, key="k") == keep + rest


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


class _Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    srv = _Server()
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
                     convert=partial(papers.convert_ape, "antonyms"), shipped=False, cap=5)
    monkeypatch.setitem(papers.TASKS, task.spec, task)
    server.files[f"/someone/seed-paper/{COMMIT}/raw/induce/antonyms.json"] = ANTONYMS_INDUCE
    server.files[f"/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json"] = ANTONYMS_EXECUTE
    return task


def test_download_checks_caches_and_a_second_load_makes_no_request(toy, server):
    ds = load_dataset("paper:toy/antonyms")
    assert len(ds) == 5 and [e.id for e in ds.examples[:3]] == ["execute-1", "execute-2", "execute-3"]
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
    assert f"{server.url}/someone/seed-paper/{COMMIT}/raw/execute/antonyms.json: HTTP 404 Not Found" in message
    assert not papers.cache_path(toy, "induce").exists()  # nothing is cached from a task that failed


def test_a_file_that_is_not_the_pinned_one_is_refused(toy, server):
    server.files[f"/someone/seed-paper/{COMMIT}/raw/induce/antonyms.json"] = ANTONYMS_INDUCE + b" "
    with pytest.raises(DataError, match=r"raw/induce/antonyms\.json: not the pinned file \(git blob [0-9a-f]{12}, "
                                        rf"expected {git_blob_sha(ANTONYMS_INDUCE)[:12]}\)$"):
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
                     convert=papers.convert_rlprompt, shipped=False)
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
    assert len(load_dataset("paper:toy/antonyms")) == 5
    assert len(server.requests) == 3 and server.requests[-1].endswith("/raw/execute/antonyms.json")
    assert papers.cache_path(toy, "execute").read_bytes() == ANTONYMS_EXECUTE


def test_a_local_copy_comes_first_and_no_download_is_respected(toy, server, monkeypatch, tmp_path):
    from promptgym.data.bigbench import no_download

    with no_download(), pytest.raises(DataError, match=r"^paper:toy/antonyms: not on this machine: no local copy"):
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


def _build_module():
    spec = importlib.util.spec_from_file_location("paper_build", DATA / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_build_is_deterministic_and_writes_what_the_loader_reads(toy, tmp_path, server):
    build = _build_module()
    snapshot = tmp_path / "snapshot"  # a plain folder holding the pinned files
    for role, f in toy.files.items():
        (snapshot / f.path).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / f.path).write_bytes({"induce": ANTONYMS_INDUCE, "execute": ANTONYMS_EXECUTE}[role])
    outs = []
    for run in ("a", "b"):
        summaries, changed = build.build({toy.repo: snapshot}, tmp_path / run, [toy])
        outs.append((tmp_path / run / "toy" / "antonyms.jsonl").read_bytes())
        assert summaries[0]["rows"] == 5 and summaries[0]["upstream"] == 7 and len(changed) == 1
    assert outs[0] == outs[1]
    assert build.build({toy.repo: snapshot}, tmp_path / "a", [toy], check=True)[1] == []
    from_file = [json.loads(line) for line in outs[0].decode().splitlines()]
    loaded = load_dataset("paper:toy/antonyms")  # downloaded and converted: the same rows
    assert [(r["id"], r["input"], r["target"]) for r in from_file] == \
           [(e.id, e.input, e.target) for e in loaded.examples]

    (snapshot / toy.files["induce"].path).write_bytes(ANTONYMS_INDUCE + b"\n")
    with pytest.raises(build.BuildError, match=r"raw/induce/antonyms\.json is not the file at c0ffee"):
        build.build({toy.repo: snapshot}, tmp_path / "c", [toy])


@pytest.mark.skipif(not os.environ.get("PROMPTGYM_PAPER_SNAPSHOTS"),
                    reason="set PROMPTGYM_PAPER_SNAPSHOTS=owner/repo=PATH,... to the seed repositories")
def test_shipped_files_are_what_build_py_makes_from_the_pinned_upstream_files(capsys):
    assert _build_module().main(["--check"]) == 0, capsys.readouterr().err


def test_a_file_url_mirror_works(toy, server, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    for role, f in toy.files.items():
        path = mirror / toy.repo / toy.commit / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes({"induce": ANTONYMS_INDUCE, "execute": ANTONYMS_EXECUTE}[role])
    monkeypatch.setenv(papers.URL_ENV, mirror.as_uri())
    assert len(load_dataset("paper:toy/antonyms")) == 5 and server.requests == []
