"""The seed papers' own benchmark tasks: ``paper:PAPER/TASK`` (``paper:ape/antonyms``,
``paper:protegi/liar``, ``paper:rlprompt/sst-2``...), so that our tables can stand next to theirs.

Each task is pinned to files at one commit of the paper's repository. promptgym's repository
holds none of these files nor rows made from them. A load looks, in order:

1. for a local copy, ``PAPER/TASK.jsonl`` in ``$PROMPTGYM_PAPER_DATA`` or, when that is not set,
   in the git-ignored ``benchmarks/data`` folder of the checkout this package runs from (an editable
   install). ``benchmarks/data/build.py`` writes such a copy from local clones of the repositories;
2. for the pinned upstream files in the download cache, ``$PROMPTGYM_HOME/downloads/papers/OWNER/
   REPO/COMMIT/PATH`` (``build.py --fill-cache`` fills it too);
3. for the pinned files at ``$PROMPTGYM_PAPER_URL/OWNER/REPO/COMMIT/PATH`` (default
   https://raw.githubusercontent.com). What arrives must be the pinned file byte for byte (its git
   blob hash) and must convert; only then is it written to the cache, atomically.

Inside :func:`promptgym.data.download.no_download`, only the first two are looked at.

Upstream files are converted to rows by the functions below, which ``benchmarks/data/build.py`` uses
too, so a task has the same rows whichever source it came from: every distinct input of the pinned
files, the paper's evaluation split first. A failure is one line naming every source tried and how
to get the data without a network.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from promptgym.data.dataset import Dataset, Example
from promptgym.data.download import DownloadError, downloads_allowed, fetch, write_atomic
from promptgym.data.rows import jsonl_rows, rows_to_dataset
from promptgym.errors import DataError
from promptgym.paths import downloads_dir

DEFAULT_URL = "https://raw.githubusercontent.com"
URL_ENV = "PROMPTGYM_PAPER_URL"
DATA_ENV = "PROMPTGYM_PAPER_DATA"
SEED = 2026  # orders cause_and_effect's sentence pairs; changing it changes those rows
MAX_BYTES = 64 << 20  # no pinned file is near this; a larger answer is not the file
TIMEOUT = 60.0  # seconds per connect and per read

Row = dict[str, Any]
Converter = Callable[[dict[str, bytes], dict[str, str]], tuple[list[Row], list[Row]]]


@dataclass(frozen=True)
class SourceFile:
    path: str  # inside the repository
    blob: str | None  # its git blob SHA-1 at the pinned commit (None: checked by conversion only)


@dataclass
class PaperTask:
    """One task: pinned files and how they become rows. ``convert`` returns the rows of the paper's
    evaluation split and the rest; a task's rows are both, in that order."""

    spec: str  # "ape/antonyms"
    repo: str  # "keirp/automatic_prompt_engineer"
    commit: str  # 40 hex digits
    files: dict[str, SourceFile]  # role ("induce", "test"...) -> file
    convert: Converter
    # Whether the licences of the repository and of the data underneath would allow redistributing
    # the rows (benchmarks/data/README.md says why). Information only: promptgym's repository holds
    # no task's data either way.
    redistributable: bool
    description: str | None = None  # the starting instruction (None: promptgym's neutral one)

    def rows(self, data: dict[str, bytes], where: dict[str, str]) -> list[Row]:
        """The task's rows from the upstream files' bytes (``where``: their names for messages)."""
        keep, rest = self.convert(data, where)
        return keep + rest

    def url(self, base: str, role: str) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.files[role].path}"


# ------------------------------------------------------------------------------------------------
# Conversion (shared with benchmarks/data/build.py)


def git_blob_sha(data: bytes) -> str:
    """The git blob id of ``data`` (what ``git ls-tree`` shows for a file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _rank(*parts: object) -> str:
    """A seeded choice that no library version changes: the SHA-256 of the parts."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def rows_to_jsonl(rows: list[Row]) -> str:
    """The rows as promptgym JSONL: ``id``, ``input``, ``target`` (a list when several answers are
    accepted) and ``choices`` for classification; one object per line, keys in that order."""
    out = []
    for row in rows:
        obj = {"id": row["id"], "input": row["input"], "target": row["target"]}
        if row.get("choices") is not None:
            obj["choices"] = row["choices"]
        out.append(json.dumps(obj, ensure_ascii=False) + "\n")
    return "".join(out)


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(_text(data, where))
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _string(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{name}' must be non-empty text")
    return value


def _answers(first: Any, more: Any, where: str, name: str) -> str | list[str]:
    """The canonical answer first, then the other accepted ones (each once); one answer as text."""
    answers = [_string(first, where, "output")]
    if more is not None:
        if not isinstance(more, list):
            raise DataError(f"{where}: field '{name}' must be a list of texts")
        for value in more:
            if not isinstance(value, str):
                raise DataError(f"{where}: field '{name}' must be a list of texts")
            if value.strip() and value not in answers:  # upstream lists hold a few empty strings
                answers.append(value)
    return answers[0] if len(answers) == 1 else answers


def _dedupe(rows: list[Row]) -> list[Row]:
    """The first row of each input (upstream repeats some: rhymes has 887 distinct inputs in 3000
    induce rows); a repeat would let one input sit in both train and test."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["input"] not in seen:
            seen.add(row["input"])
            out.append(row)
    return out


# APE (instruction induction): raw/{induce,execute}/TASK.json, {"examples": {"1": {...}, ...}}.
# Extra accepted answers, as the instruction-induction authors' evaluation lists them.
_APE_MORE = {"rhymes": "other_rhymes", "translation_en-de": "possible_translations",
             "translation_en-es": "possible_translations", "translation_en-fr": "possible_translations",
             "sentence_similarity": "possible_outputs", "word_in_context": "possible_outputs"}


def _ape_split(task: str, split: str, data: bytes, where: str) -> list[Row]:
    doc = _json(data, where)
    examples = doc.get("examples") if isinstance(doc, dict) else None
    if not isinstance(examples, dict) or not examples:
        raise DataError(f"{where}: expected an object with a non-empty 'examples' object")
    rows = []
    for key in sorted(examples, key=lambda k: (len(k), k)):  # "1", "2", ..., "10": upstream order
        ex, at = examples[key], f"{where}: example {key}"
        if not isinstance(ex, dict):
            raise DataError(f"{at}: expected a JSON object")
        if task == "cause_and_effect":
            # APE puts cause and effect in a random order; here the order is a seeded hash, so
            # the rows never change. The answer is the cause.
            cause, effect = _string(ex.get("cause"), at, "cause"), _string(ex.get("effect"), at, "effect")
            first, second = (cause, effect) if int(_rank(SEED, task, split, key), 16) % 2 else (effect, cause)
            text, target = f"Sentence 1: {first} Sentence 2: {second}", cause
        elif task == "common_concept":
            # every item, as the instruction-induction evaluation does (APE's loader drops the last)
            items = ex.get("items")
            if not isinstance(items, list) or not items:
                raise DataError(f"{at}: field 'items' must be a non-empty list")
            text = ", ".join(_string(i, at, "items") for i in items)
            concepts = ex.get("all_common_concepts")
            target = _answers(ex.get("concept"), concepts, at, "all_common_concepts")
        else:
            text = _string(ex.get("input"), at, "input")
            target = _answers(ex.get("output"), ex.get(_APE_MORE.get(task, "")), at, _APE_MORE.get(task, ""))
        rows.append({"id": f"{split}-{key}", "input": text, "target": target})
    return rows


def convert_ape(task: str, data: dict[str, bytes], where: dict[str, str]) -> tuple[list[Row], list[Row]]:
    """Every execute row (the papers' test set), then the induce rows, each input once."""
    rows = _dedupe(_ape_split(task, "execute", data["execute"], where["execute"])
                   + _ape_split(task, "induce", data["induce"], where["induce"]))
    return ([r for r in rows if r["id"].startswith("execute-")],
            [r for r in rows if r["id"].startswith("induce-")])


YES_NO = ["No", "Yes"]  # ProTeGi's BinaryClassificationTask.categories, indexed by the 0/1 label


def _protegi_jsonl(data: bytes, where: str, split: str) -> list[Row]:
    rows = []
    for i, line in enumerate(_text(data, where).split("\n")):
        if not line.strip():
            continue
        at = f"{where}:{i + 1}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{at}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or obj.get("label") not in (0, 1) or isinstance(obj.get("label"), bool):
            raise DataError(f"{at}: expected an object with 'label' 0 or 1 and 'text'")
        rows.append({"id": f"{split}-{len(rows)}", "input": _string(obj.get("text"), at, "text"),
                     "target": YES_NO[obj["label"]], "choices": YES_NO})
    if not rows:
        raise DataError(f"{where}: no rows")
    return rows


def convert_liar(data: dict[str, bytes], where: dict[str, str]) -> tuple[list[Row], list[Row]]:
    """ProTeGi's LIAR: label 1 (the statement is false) is "Yes" (a lie), 0 (true) is "No"."""
    return (_protegi_jsonl(data["test"], where["test"], "test"),
            _protegi_jsonl(data["train"], where["train"], "train"))


def convert_ethos(data: dict[str, bytes], where: dict[str, str]) -> tuple[list[Row], list[Row]]:
    """ProTeGi's ETHOS: ``text;score`` rows without a header; rows scored in (0, 0.7) are dropped,
    a score above 0.4 is hate speech ("Yes"); the first 200 kept rows are ProTeGi's test split.
    Ids carry the row's index in the file (ProTeGi's own ids)."""
    text = _text(data["data"], where["data"])
    kept = []
    for index, cells in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=";")):
        at = f"{where['data']}: row {index + 1}"
        if len(cells) != 2:
            raise DataError(f"{at}: expected 2 cells (text;score), got {len(cells)}")
        try:
            score = float(cells[1])
        except ValueError:
            raise DataError(f"{at}: score {cells[1]!r} is not a number") from None
        if score <= 0 or score >= 0.7:
            kept.append((index, _string(cells[0], at, "text"), "Yes" if score > 0.4 else "No"))
    if len(kept) <= 200:
        raise DataError(f"{where['data']}: {len(kept)} usable rows, expected more than 200")
    rows = [{"id": f"{'test' if n < 200 else 'train'}-{index}", "input": t, "target": label, "choices": YES_NO}
            for n, (index, t, label) in enumerate(kept)]
    return rows[:200], rows[200:]


TERRIBLE_GREAT = ["terrible", "great"]  # RLPrompt's verbalizers for sst-2, mr (and yelp-2, cr), label 0/1


def _rlprompt_tsv(data: bytes, where: str, split: str) -> list[Row]:
    reader = csv.reader(io.StringIO(_text(data, where), newline=""), delimiter="\t")  # quoted like pandas
    header = next(reader, None)
    if header != ["sentence", "label"]:
        raise DataError(f"{where}: expected the header 'sentence<TAB>label', got {header!r}")
    rows = []
    for cells in reader:
        at = f"{where}:{reader.line_num}"
        if not cells:
            continue
        if len(cells) != 2 or cells[1].strip() not in ("0", "1"):
            raise DataError(f"{at}: expected a sentence and a label 0 or 1")
        rows.append({"id": f"{split}-{len(rows)}", "input": _string(cells[0], at, "sentence"),
                     "target": TERRIBLE_GREAT[int(cells[1])], "choices": TERRIBLE_GREAT})
    if not rows:
        raise DataError(f"{where}: no rows")
    return rows


def convert_rlprompt(data: dict[str, bytes], where: dict[str, str]) -> tuple[list[Row], list[Row]]:
    """The test set, then the 16-shot train and dev sets of RLPrompt's dataset_seed 0 (16-100)."""
    return (_rlprompt_tsv(data["test"], where["test"], "test"),
            _rlprompt_tsv(data["train"], where["train"], "train") + _rlprompt_tsv(data["dev"], where["dev"], "dev"))


# ------------------------------------------------------------------------------------------------
# The registry

APE_REPO, APE_COMMIT = "keirp/automatic_prompt_engineer", "eac521c79a78965245ce7745dcc9f6b0792c7ec7"
LMOPS_REPO = "microsoft/LMOps"
LMOPS_COMMIT = "4f2a9deb5f08e459fd44c2e4792344d78ca89fc3"
# ETHOS was deleted from LMOps in 8c8ddeb8 (issue #221, a complaint about its offensive words); this
# is that commit's parent, the last one with the file ProTeGi's split comes from.
LMOPS_ETHOS_COMMIT = "5d6a4db613531f6cfcaa0a330233c6f30f4c6d69"
RLPROMPT_REPO, RLPROMPT_COMMIT = "mingkaid/rl-prompt", "30528c21e5eb6cbeefa3036d7c7e4ae7e98e597e"

# git blob ids (induce, execute) of raw/{induce,execute}/TASK.json at APE_COMMIT
_APE_BLOBS = {
    "active_to_passive": ("335346258ce4dbd318061fcbe0607f50647adc58", "342d478b778b3b80037aa25e2c386f7378ae6fd0"),
    "antonyms": ("a0c9a8511eaa6ab4914c1d0c153caaea60cf44f3", "a1d6559f511c57bab190ad5b5768a834805523f7"),
    "cause_and_effect": ("00e8f5663f72089cd46902bcee08f9f41fdc77b9", "b22eabedbee19fb8fef006456b48056ec84f871a"),
    "common_concept": ("97db90e6b76fe7966b19ddbfb47f5135b10a5bce", "264490c4915986ebf0673c28d9978734f30d7d03"),
    "diff": ("e8cf6a18d6111ec0cf020b7f4c87cc94c2c4da60", "5763e7a454c5d340348385774563e639910cdade"),
    "first_word_letter": ("f441dbc8cbe1f01b1064a3ab48aa522b92985a88", "c388d818663b317f6def9351e5b7c97e062fdc53"),
    "informal_to_formal": ("fb5e6371c5e9f22e29cbb5c6d9b1c154700bcc1d", "14a9d16e52ed384343a865dc684475671376c415"),
    "larger_animal": ("9c7b13fab67063cb8829b519dcb41e8d2fcbd0cf", "b99b1456b6ba36c56d4958cb416af92fc90feb0a"),
    "letters_list": ("978cd7f6dff7a6fd23ad6c8f1261b3f6db629580", "37ce8bc4997684a9845faff7cedc1c290e30bb94"),
    "negation": ("0a916e1652ba79572b9790a0d7467865fbe544ab", "3b40541b2c38bcce2789ea2e54353229be8777fe"),
    "num_to_verbal": ("849220248519ae6afa4c31f6794078453acfd3e2", "ee02f267b01f9c301fe2b6061908e151c4bf746e"),
    "orthography_starts_with": ("4faee53a113909b0f1e727f209513af3ac2ba2cb", "aa3540074b0063c3dbb60ce70bf8cd932ac62c89"),
    "rhymes": ("92342e851253f8a61513e8822de318f7775d011d", "d7e85aea4286663517a57b8c32b263252d0e3696"),
    "second_word_letter": ("e7bf2064fb1862830b8929ffcb555e97865302e2", "fca932ed26e59001a656432f80b175d8c94a7d98"),
    "sentence_similarity": ("1ca7f0e3ada1984b41775a76eccd5dbeee41865b", "94cadd1fe80351ffffdaee64af837b810c7190fc"),
    "sentiment": ("e2a5fcac3a4d398ab7b82fcab1defab0bf723841", "0b2e0b059815878adbbaee6aae4753433f9f026d"),
    "singular_to_plural": ("b635e815e93eda9ffc7ecb3453876ab8b7901bc4", "bb11ff4694511ecb38613b6b4e0916a693b0de69"),
    "sum": ("6be7a6f3bc04c5d7815debea69622c9c0e6a1084", "7ca1b6cb904b15f6362ce1226c27f3a7d436374f"),
    "synonyms": ("b6c027a2b7745e7ba9f9b1d3dbb89331f175b628", "b3223eba42216be879dd110874943e85a7c7cbd1"),
    "taxonomy_animal": ("4bc75c8ff8ab394984dce7675019a6abad62c331", "9e323b4f60907392b4b932a4de1d81b61d937200"),
    "translation_en-de": ("279a645efe25e3a25421ffa6a20852946d6ae76d", "af8762efaf79725c77ef573d3605ddb01a336e1c"),
    "translation_en-es": ("21b71bb913e8726552e6aca53e59340276dc25fa", "1e1c4f52c22b49ce846f09212e6c1167bb8367fa"),
    "translation_en-fr": ("a9380ca2099b9122fb05ac56f029ff32c8736381", "518b66fb01e9eeaf04b41d52303c4cafb1571b9d"),
    "word_in_context": ("6c8e0eb396578e7f64a3da2dcdae8f8745a4a570", "d51fac3d479440e840a968c645196e77bef68604"),
}
# Instruction-induction tasks built on an earlier corpus whose own terms forbid commercial use (WiC:
# CC BY-NC 4.0) or that neither repository names or licenses: not redistributable. The other 16 hold
# data the instruction-induction authors wrote or generated (Apache-2.0, MIT in APE's repository).
APE_NOT_REDISTRIBUTABLE = frozenset({"word_in_context", "sentiment", "sentence_similarity", "negation",
                                     "orthography_starts_with", "translation_en-de", "translation_en-es",
                                     "translation_en-fr"})
_APE_DIR = "experiments/data/instruction_induction/raw"


def _ape_task(task: str) -> PaperTask:
    induce, execute = _APE_BLOBS[task]
    # No starting instruction: APE starts from demonstrations only, and the task's annotation is the
    # gold instruction (starting from it would leave nothing to find). promptgym's neutral one applies.
    return PaperTask(spec=f"ape/{task}", repo=APE_REPO, commit=APE_COMMIT,
                     files={"induce": SourceFile(f"{_APE_DIR}/induce/{task}.json", induce),
                            "execute": SourceFile(f"{_APE_DIR}/execute/{task}.json", execute)},
                     convert=partial(convert_ape, task),
                     redistributable=task not in APE_NOT_REDISTRIBUTABLE)


def _rlprompt_task(name: str, blobs: tuple[str, str, str]) -> PaperTask:
    folder = f"examples/few-shot-classification/data/16-shot/{name}/16-100"
    # RLPrompt learns a few tokens in "{sentence} {prompt} <mask> ." and has no instruction to start
    # from (its manual baseline is a cloze suffix, "It was <mask>."): promptgym's neutral one applies.
    return PaperTask(spec=f"rlprompt/{name}", repo=RLPROMPT_REPO, commit=RLPROMPT_COMMIT,
                     files={role: SourceFile(f"{folder}/{role}.tsv", blob)
                            for role, blob in zip(("train", "dev", "test"), blobs)},
                     convert=convert_rlprompt, redistributable=False)  # no licence stated


def _registry() -> dict[str, PaperTask]:
    tasks = [_ape_task(t) for t in sorted(_APE_BLOBS)]
    tasks.append(PaperTask(
        spec="protegi/liar", repo=LMOPS_REPO, commit=LMOPS_COMMIT,
        files={"train": SourceFile("prompt_optimization/data/liar/train.jsonl",
                                   "0f59913d73fede45149489103855edda156fd1fc"),
               "test": SourceFile("prompt_optimization/data/liar/test.jsonl",
                                  "4a7cf5e037c48dd09af16f14667c6adf17ae6ccb")},
        convert=convert_liar, redistributable=False,  # LIAR: research use only
        # the "# Task" line of ProTeGi's prompts/liar.md, its starting prompt
        description="Determine whether the Statement is a lie (Yes) or not (No) based on the Context and "
                    "other information."))
    tasks.append(PaperTask(
        spec="protegi/ethos", repo=LMOPS_REPO, commit=LMOPS_ETHOS_COMMIT,
        files={"data": SourceFile("prompt_optimization/data/ethos/ethos_ishate_binary_shuf.csv",
                                  "e421501f44bcf63044eb80b73f9a37078a4aa368")},
        convert=convert_ethos, redistributable=False,  # hate speech, GPLv3, removed upstream
        description="Is the following text hate speech?"))  # prompts/ethos.md's "# Task" line
    tasks.append(_rlprompt_task("sst-2", ("e655a91284936ea4a61ec5eb1350d7772e00403d",
                                          "d416284211a865261cf3fa90ea2f1781dfaa270f",
                                          "5b6ee8ff4fddb5bf9a2284eaf3d2aaf40a996326")))
    tasks.append(_rlprompt_task("mr", ("9799c9264bca9d6ebb3f04899779b740ab45b44d",
                                       "ab85370986a92e44476c088278cb6f95ae7ca1db",
                                       "c94fda1b5201fe24c46be6a7ecb3b26ee35538e4")))
    return {t.spec: t for t in tasks}


TASKS: dict[str, PaperTask] = _registry()


def available() -> list[str]:
    """Every task's spec without the ``paper:`` prefix (``ape/antonyms``, ...)."""
    return sorted(TASKS)


def get_task(name: str) -> PaperTask:
    name = name.strip().strip("/")
    if not name:
        raise DataError("paper: give a task, e.g. paper:ape/antonyms or paper:protegi/liar")
    if name not in TASKS:
        paper = name.split("/")[0]
        same = [s.split("/", 1)[1] for s in sorted(TASKS) if s.split("/")[0] == paper]
        known = (f"{paper} has: {', '.join(same)}" if same
                 else f"papers: {', '.join(sorted({s.split('/')[0] for s in TASKS}))}")
        raise DataError(f"paper:{name}: no such task ({known})")
    return TASKS[name]


# ------------------------------------------------------------------------------------------------
# Loading


def checkout_data_dir() -> Path | None:
    """``benchmarks/data`` of the checkout this module runs from (src/promptgym/data/papers.py), or
    None when promptgym does not run from a checkout (an installed wheel has no benchmarks/)."""
    folder = Path(__file__).resolve().parents[3] / "benchmarks" / "data"
    return folder if (folder / "build.py").is_file() else None


def local_dir() -> Path | None:
    """Where local copies are looked for: ``$PROMPTGYM_PAPER_DATA``, else the checkout's folder."""
    override = os.environ.get(DATA_ENV)
    return Path(override).expanduser() if override else checkout_data_dir()


def offline_hint(task: PaperTask) -> str:
    """How to get a task's rows onto a machine without a network (for error messages)."""
    return (f"to load it offline, clone https://github.com/{task.repo} and run `python benchmarks/data/build.py "
            f"--snapshot {task.repo}=CLONE --task {task.spec} --out DIR` in a promptgym checkout, then set "
            f"{DATA_ENV}=DIR (benchmarks/data/README.md)")


def cache_path(task: PaperTask, role: str) -> Path:
    return downloads_dir() / "papers" / task.repo / task.commit / task.files[role].path


def base_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


def load_paper(name: str) -> Dataset:
    task = get_task(name)
    spec = f"paper:{task.spec}"
    tried: list[str] = []
    folder = local_dir()
    local = folder / f"{task.spec}.jsonl" if folder is not None else None
    if local is not None and local.is_file():
        return _dataset(task, list(jsonl_rows(local)))
    tried.append(f"no local copy ({local})" if local is not None else f"no local copy (${DATA_ENV} is not set)")

    data: dict[str, bytes] = {}
    where: dict[str, str] = {}
    for role in task.files:
        path = cache_path(task, role)
        if path.is_file():
            blob = path.read_bytes()
            if _matches(task, role, blob):
                data[role], where[role] = blob, str(path)
    missing = [role for role in task.files if role not in data]
    if not missing:
        return _dataset(task, _located(task.rows(data, where), where))
    tried.append(f"not in the download cache ({cache_path(task, missing[0])})")
    if not downloads_allowed():
        raise DataError(f"{spec}: not on this machine: {'; '.join(tried)}; {offline_hint(task)}")

    fetched: dict[str, bytes] = {}
    for role in missing:
        url = task.url(base_url(), role)
        try:
            blob = fetch(url, max_bytes=MAX_BYTES, timeout=TIMEOUT, what="pinned file")
            if not _matches(task, role, blob):
                expected = (task.files[role].blob or "")[:12]
                raise DownloadError(f"not the pinned file (git blob {git_blob_sha(blob)[:12]}, expected {expected})")
        except (DownloadError, ValueError) as exc:
            # a ValueError is a URL urllib cannot read: $PROMPTGYM_PAPER_URL=example.org
            hint = f" (set {URL_ENV} to a base URL such as {DEFAULT_URL})" if isinstance(exc, ValueError) else ""
            raise DataError(f"{spec}: could not load it: {'; '.join(tried)}; {url}: {exc}{hint}; "
                            f"{offline_hint(task)}") from None
        fetched[role], where[role] = blob, url
    rows = task.rows({**data, **fetched}, where)  # converts, or says which file and row is wrong
    for role, blob in fetched.items():
        write_atomic(cache_path(task, role), blob)
    return _dataset(task, _located(rows, where))


def _matches(task: PaperTask, role: str, blob: bytes) -> bool:
    expected = task.files[role].blob
    return expected is None or git_blob_sha(blob) == expected


def _located(rows: list[Row], where: dict[str, str]) -> list[tuple[str, Row]]:
    """Each row with a place for messages: the source file that holds it and the row's id."""
    roles = sorted(where, key=len, reverse=True)
    out = []
    for row in rows:
        role = next((r for r in roles if row["id"].startswith(f"{r}-")), None)
        out.append((f"{where[role] if role else ', '.join(where.values())}: {row['id']}", row))
    return out


def _dataset(task: PaperTask, rows: list[tuple[str, Row]]) -> Dataset:
    spec = f"paper:{task.spec}"
    data = rows_to_dataset(rows, source=spec, name=task.spec, infer_choices=False)
    examples = []
    seen: set[str] = set()
    for (where, row), example in zip(rows, data.examples):
        ident = str(row.get("id", example.id))
        if ident in seen:
            raise DataError(f"{where}: id {ident!r} appears twice")
        seen.add(ident)
        examples.append(Example(ident, example.input, example.targets, example.choices, where=example.where))
    return Dataset(name=task.spec, examples=examples, description=task.description, source=spec)
