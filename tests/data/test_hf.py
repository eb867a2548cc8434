"""``hf:`` datasets through the real ``datasets`` library, offline: datasets written with
``save_to_disk``, and Hub datasets that the library downloaded from a loopback Hub (``HF_ENDPOINT``,
tests/hub_server.py) and then reads from its own cache with ``HF_HUB_OFFLINE=1``. Nothing of the
library is replaced. Every bad spec is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import promptgym
from promptgym.cli import main
from promptgym.data.loaders import load_dataset
from promptgym.store.runs import RunStore

from hub_server import COMMIT, HubServer
from support import one_line_data_error

SRC = str(Path(promptgym.__file__).resolve().parents[1])  # the promptgym these tests import
MOODS = ["negative", "neutral", "positive"]
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("datasets", reason="needs the hf extra: pip install 'promptgym[hf]'")


_error = one_line_data_error


def _features(hf, **extra):
    return hf.Features({"sentence": hf.Value("string"), "label": hf.ClassLabel(names=MOODS),
                        "stars": hf.Value("int32"), **extra})


def _split(hf, n: int, prefix: str, label=lambda i: i % 2):
    """``n`` rows; labels 0 and 1 only (so 'positive' is a class no row has)."""
    return hf.Dataset.from_dict({"sentence": [f"{prefix} sentence {i}" for i in range(n)],
                                 "label": [label(i) for i in range(n)], "stars": [i % 5 for i in range(n)]},
                                features=_features(hf))


@pytest.fixture
def saved(hf, tmp_path) -> Path:
    """A DatasetDict (train 10, validation 4, test 3 unlabelled) written with save_to_disk."""
    path = tmp_path / "moods"
    hf.DatasetDict(train=_split(hf, 10, "train"), validation=_split(hf, 4, "dev"),
                   test=_split(hf, 3, "test", label=lambda i: -1)).save_to_disk(str(path))
    return path


# -- a dataset on disk -----------------------------------------------------------------------------

def test_saved_dataset_dict_class_labels_are_the_label_words(saved):
    data = load_dataset(f"hf:{saved}")
    assert data.source == f"hf:{saved}" and data.name == "moods" and len(data) == 10
    first = data.examples[0]
    assert (first.id, first.input, first.targets) == ("0", "train sentence 0", ("negative",))
    assert data.examples[1].targets == ("neutral",)
    assert data.labels == tuple(MOODS)  # every ClassLabel name, 'positive' too though no row has it
    assert data.is_choice
    assert first.where == f"hf:{saved}@train:row 0" and data.examples[7].where == f"hf:{saved}@train:row 7"


def test_split_choice_and_slices(saved):
    assert [e.input for e in load_dataset(f"hf:{saved}@validation").examples][0] == "dev sentence 0"
    part = load_dataset(f"hf:{saved}@train[6:9]")
    assert [e.where for e in part.examples] == [f"hf:{saved}@train:row {i}" for i in (6, 7, 8)]
    assert [e.id for e in part.examples] == ["0", "1", "2"]
    assert len(load_dataset(f"hf:{saved}@train[:50%]")) == 5
    both = load_dataset(f"hf:{saved}@train[-2:]+validation[:1]")
    assert [e.where for e in both.examples] == [f"hf:{saved}@train:row 8", f"hf:{saved}@train:row 9",
                                                f"hf:{saved}@validation:row 0"]


def test_field_options_and_plain_columns(saved):
    data = load_dataset(f"hf:{saved}", input_field="sentence", target_field="stars")
    assert data.examples[3].targets == ("3",)
    assert data.labels == ("0", "1", "2", "3", "4")  # inferred as for files: 5 values in 10 rows
    assert load_dataset(f"hf:{saved}", target_field="stars", infer_choices=False).labels is None


def test_single_saved_dataset_and_a_data_folder_path(hf, tmp_path, monkeypatch):
    _split(hf, 6, "one").save_to_disk(str(tmp_path / "one"))
    monkeypatch.chdir(tmp_path)
    assert len(load_dataset("hf:./one")) == 6
    assert len(load_dataset("hf:one@train")) == 6  # an existing directory is local, as for the library
    assert _error("hf:./one@test") == "hf:./one@test: no split 'test' (splits: train)"


def test_list_targets_are_accepted_answers_and_class_label_lists_map_to_names(hf, tmp_path):
    features = hf.Features({"question": hf.Value("string"), "answers": hf.List(hf.Value("string")),
                            "tags": hf.List(hf.ClassLabel(names=["red", "green"]))})
    hf.Dataset.from_dict({"question": ["q0", "q1"], "answers": [["a", "A"], ["b"]], "tags": [[1, 0], [0]]},
                         features=features).save_to_disk(str(tmp_path / "qa"))
    assert _error(f"hf:{tmp_path / 'qa'}") == (
        f"hf:{tmp_path / 'qa'}@train: missing target field (looked for target, output, answer, label; name it "
        "with --target-field; columns: question, answers, tags)")
    data = load_dataset(f"hf:{tmp_path / 'qa'}", target_field="answers")
    assert [e.targets for e in data.examples] == [("a", "A"), ("b",)] and data.labels is None
    tags = load_dataset(f"hf:{tmp_path / 'qa'}", target_field="tags")
    assert [e.targets for e in tags.examples] == [("green", "red"), ("red",)]


def test_a_choices_column_wins_over_the_class_label_names(hf, tmp_path):
    features = hf.Features({"text": hf.Value("string"), "label": hf.ClassLabel(names=["yes", "no"]),
                            "options": hf.List(hf.Value("string"))})
    hf.Dataset.from_dict({"text": ["t0", "t1"], "label": [0, 1], "options": [["yes", "no", "maybe"]] * 2},
                         features=features).save_to_disk(str(tmp_path / "opts"))
    data = load_dataset(f"hf:{tmp_path / 'opts'}")
    assert data.labels == ("yes", "no", "maybe") and data.examples[1].targets == ("no",)


def test_an_input_template_renders_the_input_from_columns_class_labels_as_names(hf, tmp_path):
    features = hf.Features({"question": hf.Value("string"), "context": hf.Value("string"),
                            "topic": hf.ClassLabel(names=["maths", "art"]), "label": hf.ClassLabel(names=["no", "yes"]),
                            "embedding": hf.List(hf.Value("float32"))})
    hf.Dataset.from_dict({"question": ["q0", "q1"], "context": ["c0", "c1"], "topic": [1, 0], "label": [1, 0],
                          "embedding": [[0.5], [0.25]]}, features=features).save_to_disk(str(tmp_path / "qa"))
    spec = f"hf:{tmp_path / 'qa'}"
    data = load_dataset(spec, input_template="[{{ topic }}] {{ question }}\n{{ context }}")
    assert [e.input for e in data.examples] == ["[art] q0\nc0", "[maths] q1\nc1"]
    assert data.examples[0].fields == (("topic", "art"), ("question", "q0"), ("context", "c0"))
    assert data.labels == ("no", "yes") and data.examples[0].targets == ("yes",)
    columns = "columns: question, context, topic, label, embedding"
    assert _error(spec, input_template="{{ question }} {{ passage }}") == (
        f"{spec}@train: field 'passage' missing (named by --input-template; {columns})")
    assert _error(spec, input_template="{{ embedding }}") == f"{spec}@train: field 'embedding' holds a list, not text"
    assert _error(spec, input_template="{{ question }}", input_field="question").startswith(
        "--input-template and --input-field both say what the input is")


def test_errors_are_one_line(hf, saved, tmp_path):
    columns = "(columns: sentence, label, stars)"
    assert _error(f"hf:{saved}@dev") == f"hf:{saved}@dev: no split 'dev' (splits: train, validation, test)"
    assert _error(f"hf:{saved}", input_field="text") == f"hf:{saved}@train: missing field 'text' {columns}"
    assert _error(f"hf:{saved}@validation", target_field="gold") == \
        f"hf:{saved}@validation: missing field 'gold' {columns}"
    assert _error(f"hf:{saved}@test") == f"hf:{saved}@test:row 0: field 'label' is -1, no label " \
                                         "(is this split unlabelled?)"
    assert _error(f"hf:{tmp_path / 'nope'}") == f"hf:{tmp_path / 'nope'}: no such directory"
    assert "bad split 'train[x]'" in _error(f"hf:{saved}@train[x]")
    assert _error(f"hf:{saved}@") == f"hf:{saved}@: empty split after '@'"
    assert _error("hf:") == "hf:: no dataset named (hf:NAME[/CONFIG][@SPLIT], e.g. hf:stanfordnlp/sst2@validation)"
    assert _error("hf:a/b/c/d").startswith("hf:a/b/c/d: expected hf:NAME, hf:ORG/NAME, hf:NAME/CONFIG or ")
    hf.DatasetDict(validation=_split(hf, 2, "v"), test=_split(hf, 2, "t")).save_to_disk(str(tmp_path / "evalonly"))
    assert _error(f"hf:{tmp_path / 'evalonly'}") == (f"hf:{tmp_path / 'evalonly'}: no 'train' split (splits: "
                                                     f"validation, test): name one, e.g. hf:{tmp_path / 'evalonly'}"
                                                     "@validation")
    hf.Dataset.from_dict({"text": ["a"], "label": [{"x": 1}]}).save_to_disk(str(tmp_path / "nested"))
    nested = tmp_path / "nested"
    assert _error(f"hf:{nested}") == f"hf:{nested}@train: field 'label' holds a struct (x), not text"


def test_without_the_library_it_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed: import fails
    assert _error("hf:stanfordnlp/sst2@validation") == \
        "hf:stanfordnlp/sst2@validation: needs the 'datasets' library: pip install 'promptgym[hf]'"


def test_the_library_settings_of_the_caller_are_kept(hf, saved):
    from datasets.utils import logging as ds_logging

    ds_logging.set_verbosity_info()
    try:
        load_dataset(f"hf:{saved}")
        assert ds_logging.get_verbosity() == ds_logging.INFO and not hf.utils.are_progress_bars_disabled()
    finally:
        ds_logging.set_verbosity_warning()


def test_cli_run_and_resume_from_a_saved_dataset(saved):
    args = ["optimize", "--dataset", f"hf:{saved}", "--input-field", "sentence", "--target-field", "label", *SCRIPTED,
            "--budget", "20", "--train-size", "6", "--test-size", "4", "--dev-size", "0", "--json", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.strip().splitlines()[-1])
    assert first["dataset"] == f"hf:{saved}" and first["test_size"] == 4
    store = RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")
    assert store.get_run(first["run_id"])["config"]["fields"] == {"input": "sentence", "target": "label"}
    store.set_status(first["run_id"], "interrupted")  # a resume loads the dataset again, by its spec
    resumed = CliRunner().invoke(main, ["resume", first["run_id"], "--json"])
    assert resumed.exit_code == 0, resumed.output
    again = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert again["best_prompt"] == first["best_prompt"] and again["test_best"] == first["test_best"]
    assert again["llm_calls"] == first["llm_calls"]
    bad = CliRunner().invoke(main, ["optimize", "--dataset", f"hf:{saved}@dev", *SCRIPTED, "--dry-run"])
    assert bad.exit_code == 2 and bad.stderr.splitlines() == [
        f"promptgym: error: hf:{saved}@dev: no split 'dev' (splits: train, validation, test)"]


# -- the Hub, through its cache --------------------------------------------------------------------

LOADS = """
import json, sys
from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError
out = []
for spec, fields in json.loads(sys.argv[1]):
    try:
        data = load_dataset(spec, **fields)
        first = data.examples[0]
        out.append(dict(n=len(data), labels=list(data.labels or []), input=first.input,
                        targets=list(first.targets), where=first.where))
    except DataError as exc:
        out.append(dict(error=str(exc)))
print(json.dumps(out))
"""


def _hub_repo(hf, folder: Path, configs: dict[str, dict[str, object]]) -> Path:
    """A dataset repo laid out as ``push_to_hub`` writes one: CONFIG/SPLIT-00000-of-00001.parquet
    (the features, ClassLabel names included, in the Parquet schema) and a README.md whose YAML
    lists the configs."""
    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, data in splits.items():
            (folder / config).mkdir(parents=True, exist_ok=True)
            data.to_parquet(str(folder / config / f"{split}-00000-of-00001.parquet"))
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (folder / "README.md").write_text("\n".join(card + ["---", "# a test dataset", ""]))
    return folder


def _env(home: Path, endpoint: str, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home / "hf"), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1",
               PROMPTGYM_HOME=str(home / "promptgym"), PYTHONPATH=os.pathsep.join([SRC, env.get("PYTHONPATH", "")]))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _loads(env: dict[str, str], cases: list, cwd: Path) -> list[dict]:
    proc = _run(env, "-c", LOADS, json.dumps(cases), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bars or log lines from the library
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def hub_cache(hf, tmp_path_factory):
    """The Hub dataset ``org/reviews`` (configs en and fr), downloaded by the library from a loopback
    Hub into a fresh HF_HOME; then the Hub is gone. Returns the folder, the environment of an
    offline process, what the online loads said and the requests the Hub had."""
    home = tmp_path_factory.mktemp("hub")
    reviews = _hub_repo(hf, home / "repos" / "reviews", {
        "en": {"train": _split(hf, 12, "en"), "test": _split(hf, 4, "en test")},
        "fr": {"train": _split(hf, 6, "fr"), "test": _split(hf, 2, "fr test")}})
    hub = HubServer({"org/reviews": reviews})
    try:
        online = _loads(_env(home, hub.url, offline=False), [
            ["hf:org/reviews/en", {}], ["hf:org/reviews/fr@test", {}],
            ["hf:org/nope", {}], ["hf:org/reviews/de", {}], ["hf:org/reviews", {}], ["hf:reviews/en", {}]], cwd=home)
        requests = list(hub.requests)
    finally:
        hub.close()
    return home, _env(home, hub.url, offline=True), online, requests


def test_online_loads_from_the_loopback_hub_fill_the_library_cache(hub_cache):
    home, _, online, requests = hub_cache
    assert f"GET /datasets/org/reviews/resolve/{COMMIT}/en/train-00000-of-00001.parquet" in requests
    assert online[0] == dict(n=12, labels=MOODS, input="en sentence 0", targets=["negative"],
                             where="hf:org/reviews/en@train:row 0")
    assert online[1]["n"] == 2 and online[1]["where"] == "hf:org/reviews/fr@test:row 0"
    assert [r["error"] for r in online[2:]] == [
        "hf:org/nope: no dataset 'org/nope' on the Hugging Face Hub, or no access to it; a config is "
        "hf:ORG/NAME/CONFIG",
        "hf:org/reviews/de: dataset 'org/reviews' has no config 'de' (configs: en, fr)",
        "hf:org/reviews: dataset 'org/reviews' has several configs (en, fr): name one, e.g. hf:org/reviews/en",
        # neither a dataset reviews/en nor a config en of a dataset reviews: the first reading's error
        "hf:reviews/en: no dataset 'reviews/en' on the Hugging Face Hub, or no access to it; a config is "
        "hf:ORG/NAME/CONFIG"]
    hub_files = home / "hf" / "hub" / "datasets--org--reviews"
    assert (hub_files / "refs" / "main").read_text() == COMMIT
    assert sorted(p.name for p in (home / "hf" / "datasets" / "org___reviews").iterdir()) == ["en", "fr"]


def test_offline_the_hub_datasets_load_from_the_cache_by_their_hub_names(hub_cache):
    home, offline, _, _ = hub_cache
    cache = home / "hf" / "datasets"
    results = _loads(offline, [
        ["hf:org/reviews/en", {}],
        ["hf:org/reviews/fr@test[1:]", {"input_field": "sentence", "target_field": "stars"}],
        [f"hf:{home / 'repos' / 'reviews'}/fr", {}],  # the repo folder itself: a local dataset with configs
        # the library caches that folder under its own name, which NAME/CONFIG finds offline
        ["hf:reviews/fr", {}], ["hf:reviews/de", {}],
        ["hf:org/reviews", {}], ["hf:org/reviews/de", {}], ["hf:org/nope", {}],
        ["hf:org/reviews/en@validation", {}], ["hf:org/reviews/en", {"input_field": "text"}]], cwd=home)
    assert results[0] == dict(n=12, labels=MOODS, input="en sentence 0", targets=["negative"],
                              where="hf:org/reviews/en@train:row 0")
    assert results[1] == dict(n=1, labels=[], input="fr test sentence 1", targets=["1"],
                              where="hf:org/reviews/fr@test:row 1")
    assert results[2]["n"] == 6 and results[2]["labels"] == MOODS and results[2]["input"] == "fr sentence 0"
    assert results[3]["n"] == 6 and results[3]["where"] == "hf:reviews/fr@train:row 0"
    assert [r["error"] for r in results[4:]] == [
        "hf:reviews/de: no dataset 'reviews/de', and dataset 'reviews' has no config 'de' "
        "(configs in the local cache: fr)",
        "hf:org/reviews: dataset 'org/reviews' has several configs in the local cache (en, fr): name one, "
        "e.g. hf:org/reviews/en",
        "hf:org/reviews/de: dataset 'org/reviews' has no config 'de' (configs in the local cache: en, fr)",
        f"hf:org/nope: dataset 'org/nope' is not in the local cache ({cache}) and offline mode is on (HF_HUB_OFFLINE)",
        "hf:org/reviews/en@validation: no split 'validation' (splits: train, test)",
        "hf:org/reviews/en@train: missing field 'text' (columns: sentence, label, stars)"]


def test_offline_cli_runs_on_a_cached_hub_dataset_and_reloads_it_by_its_spec(hub_cache):
    home, offline, _, _ = hub_cache
    spec = ["--dataset", "hf:org/reviews/en", "--input-field", "sentence", "--target-field", "label", *SCRIPTED,
            "--budget", "20", "--train-size", "6", "--test-size", "4", "--dev-size", "0"]
    dry = _run(offline, "-m", "promptgym.cli", "optimize", *spec, "--dry-run", cwd=home)
    assert dry.returncode == 0 and dry.stderr == "", dry.stderr
    assert dry.stdout.startswith("projected for ape (budget 20): about ")
    run = _run(offline, "-m", "promptgym.cli", "optimize", *spec, "--json", "--quiet", cwd=home)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == "hf:org/reviews/en" and summary["test_size"] == 4
    # predict rebuilds the run's task from its stored spec: the dataset is loaded again, offline
    answer = _run(offline, "-m", "promptgym.cli", "predict", summary["run_id"], "--input", "a fine day", "--json",
                  cwd=home)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.strip().splitlines()[-1])[0]["prediction"] in MOODS
    missing = _run(offline, "-m", "promptgym.cli", "optimize", "--dataset", "hf:org/reviews/de", *SCRIPTED, cwd=home)
    assert missing.returncode == 2 and missing.stderr.splitlines() == [
        "promptgym: error: hf:org/reviews/de: dataset 'org/reviews' has no config 'de' "
        "(configs in the local cache: en, fr)"]
