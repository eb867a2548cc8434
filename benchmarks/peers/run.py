"""Peers on the same work: GEPA (its own package), DSPy (COPRO, MIPROv2, GEPA), promptolution (OPRO,
EvoPrompt GA) and promptgym's own methods, each optimizing the same tasks with the same local models
behind one counting proxy, on the same splits, with the same number of calls before the test, over
several seeds. See README.md beside this file.

    benchmarks/peers/.venv/bin/python benchmarks/peers/run.py \
        --datasets example:sentiment,paper:protegi/ethos --seeds 0,1,2 --budget 200 \
        --train-size 20 --dev-size 30 --test-size 150 --task-model gemma3-270m \
        --promptgym-methods "gpo,grips[format_edits=false]" --out benchmarks/results/peers-gemma.json

Writes the JSON (one row per system x task x seed, rewritten after each row, with the pooled
records and the comparison of our best against the best peer), a markdown table beside it (``.md``,
``table.py``), and a run directory (per task and seed: the split, each system's log and JSON; the
servers' logs). Resumable: a row already in OUT with a final status is not run again; ``--until HH:MM``
ends a part at a row boundary, and an interrupt (Ctrl-C, SIGTERM) records no row for the system it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from common import paired, read_jsonl  # noqa: E402
from proxy import Route, serve  # noqa: E402
from table import markdown, summarize, verdict  # noqa: E402

# system -> (script, its --optimizer)
PEER_SCRIPTS = {"gepa": ("peer_gepa.py", "gepa"),
                "dspy-copro": ("peer_dspy.py", "copro"), "dspy-mipro": ("peer_dspy.py", "mipro"),
                "dspy-gepa": ("peer_dspy.py", "gepa"),
                "promptolution-opro": ("peer_promptolution.py", "opro"),
                "promptolution-evoprompt-ga": ("peer_promptolution.py", "evoprompt-ga")}
PEERS = tuple(PEER_SCRIPTS)
DONE = ("ok", "crashed", "timeout")  # final statuses: such a row is not run again (crashed/timeout: unless --retry-failed)
# Settings that make two result files comparable (a resumed or merged run must share them).
SAME = ("budget", "train_size", "dev_size", "test_size", "task_model", "optimizer_model", "n_ctx")
# promptgym's shipped models that are base models (no chat template): its model factory's PACKAGED
RESOLVE = ("import sys; from promptgym.models.factory import PACKAGED; "
           "from promptgym.models.llama_cpp_backend import embedded_model_path; s = sys.argv[1]; "
           "print(embedded_model_path(PACKAGED[s][0]) if s in PACKAGED else embedded_model_path()); "
           "print(int(s in PACKAGED))")


@dataclass
class Model:
    """A model served for the run: its promptgym spec, its name at the proxy, its GGUF, whether it is
    a base model, and its server (started here, or given by URL)."""

    spec: str
    alias: str
    path: str
    plain: bool
    url: str = ""
    process: subprocess.Popen | None = None
    log: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def default_promptgym_python() -> str:
    for cand in (os.environ.get("PROMPTGYM_PYTHON"), REPO / ".venv/bin/python", Path("/work/main/.venv/bin/python")):
        if cand and Path(cand).exists():
            return str(cand)
    raise SystemExit("promptgym's python not found: pass --promptgym-python (or set PROMPTGYM_PYTHON)")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def resolve_model(py: str, spec: str, plain_flag: bool) -> Model:
    """A promptgym model spec (``embedded``, ``gemma3-270m``, ``gguf:PATH``) as a GGUF to serve."""
    if spec.startswith("gguf:"):
        path = spec[5:]
        return Model(spec, slug(Path(path).stem).lower(), path, plain_flag)
    out = subprocess.run([py, "-c", RESOLVE, spec], check=True, capture_output=True, text=True).stdout.split()
    alias = "smollm2" if spec in ("embedded", "smollm2", "") else spec
    return Model(spec, alias, out[0], plain_flag or out[1] == "1")


def start_server(py: str, model: Model, port: int, n_ctx: int, threads: int, nice: int, log: Path) -> subprocess.Popen:
    """llama-cpp-python's OpenAI-compatible server for one GGUF (chat template from the GGUF; a base
    model's chat requests never reach it: the proxy sends them as completion)."""
    cmd = [py, "-m", "llama_cpp.server", "--model", model.path, "--model_alias", model.alias, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "False",
           "--interrupt_requests", "False"]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    proc = subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited ({proc.returncode}): see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"llama_cpp.server did not answer within 600 s: see {log}")
        time.sleep(1)


def ensure_served(models: list[Model], args: argparse.Namespace, run_dir: Path) -> None:
    """Start each model's server, or start it again if it has died (a long run outlives a crash)."""
    for m in models:
        if m.process is not None and m.process.poll() is None or (m.url and m.process is None):
            continue
        port = int(m.url.rsplit(":", 1)[1]) if m.url else free_port()
        m.log = run_dir / f"server-{m.alias}.log"
        print(f"[peers] {'restarting' if m.url else 'starting'} llama_cpp.server for {m.alias} on 127.0.0.1:{port} "
              f"({m.path})", flush=True)
        m.process = start_server(args.promptgym_python, m, port, args.n_ctx, args.threads, args.nice, m.log)
        m.url = f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run_timed(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> tuple[str, int | None, float, str]:
    """Run in its own process group; returns (status, returncode, seconds, stdout)."""
    t0 = time.time()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            status = "exited"
        except subprocess.TimeoutExpired:
            stop(proc)
            out, status = "", "timeout"
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM to the harness: the system goes with it, unrecorded
            stop(proc)
            raise
    return status, proc.returncode, time.time() - t0, out or ""


def deadline(text: str | None, now: float) -> float | None:
    """``--until HH:MM`` (UTC) as a time stamp: the next such minute after ``now`` (so 01:00 given at
    23:00 means tomorrow's); None for no deadline."""
    if not text:
        return None
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not m:
        raise SystemExit(f"--until {text!r}: expected HH:MM (UTC), e.g. 19:45")
    day = now - now % 86400
    at = day + int(m[1]) * 3600 + int(m[2]) * 60
    return at if at > now else at + 86400


def phase_stats(stats: dict[str, Any]) -> dict[str, Any]:
    s, t = stats["phases"]["search"], stats["phases"]["test"]
    return {"calls_search": s["calls"], "refused_search": s["refused"], "over_budget_search": s.get("over_budget", 0),
            "server_errors_search": s["errors"], "calls_test": t["calls"],
            "tokens_search": s["prompt_tokens"] + s["completion_tokens"],
            "tokens_test": t["prompt_tokens"] + t["completion_tokens"],
            "prompt_tokens_search": s["prompt_tokens"], "completion_tokens_search": s["completion_tokens"],
            "model_seconds_search": round(s["seconds"], 1), "model_seconds_test": round(t["seconds"], 1),
            "by_model_search": s.get("by_model", {}), "by_model_test": t.get("by_model", {}),
            "request_fields": stats["params"]}


def with_test_stats(row: dict[str, Any], seed: int) -> dict[str, Any]:
    if row.get("test_start") and row.get("test_final"):
        st, fi = row["test_start"], row["test_final"]
        row["score_start"], row["score_final"] = sum(st) / len(st), sum(fi) / len(fi)
        row["n_test"] = len(st)
        p = paired(st, fi, seed=seed)
        row.update({"delta": p["delta"], "interval": p["interval"], "p_value": p["p_value"],
                    "start_only_right": p["worse"], "final_only_right": p["better"]})
    return row


@dataclass
class Cell:
    """One task and seed: its split and where its systems write."""

    dataset: str
    seed: int
    dir: Path
    description: str
    n_test: int
    test_inputs: list[str]  # the ones promptgym's test calls are told by at the proxy


def peer_row(name: str, args: argparse.Namespace, cell: Cell, base_url: str, counter, task: Model,
             optimizer: Model) -> dict[str, Any]:
    script, opt = PEER_SCRIPTS[name]
    out = cell.dir / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / script), "--optimizer", opt, "--split", str(cell.dir / "split"),
           "--base-url", base_url, "--budget", str(args.budget), "--seed", str(cell.seed), "--out", str(out),
           "--task-model", task.alias, "--meta-model", optimizer.alias]
    counter.reset(label=f"{name} {cell.dataset} {cell.seed}", budget=args.budget, phase="search")
    print(f"[peers] {name} on {cell.dataset} seed {cell.seed}: {shlex.join(cmd)}", flush=True)
    status, rc, seconds, _ = run_timed(cmd, cell.dir / f"{name}.log", args.timeout)
    row: dict[str, Any] = {}
    if out.exists():
        try:
            row.update(json.loads(out.read_text()))
        except ValueError:
            pass
    row.update(peer=name, dataset=cell.dataset, seed=cell.seed, wall_seconds=round(seconds, 1))
    if status == "timeout":
        row["status"], row["error"] = "timeout", f"no result within --timeout {args.timeout:.0f} s (killed)" + (
            f" while in status {row.get('status')!r}" if row.get("status") else "")
    elif rc != 0 and row.get("status") not in ("crashed",):
        row["status"] = "crashed"
        row["error"] = row.get("error") or last_line((cell.dir / f"{name}.log").read_text(errors="replace"))
    row.update(phase_stats(counter.stats()))
    return with_test_stats(row, cell.seed)


def promptgym_row(method: str, args: argparse.Namespace, cell: Cell, base_url: str, counter, task: Model,
                  optimizer: Model) -> dict[str, Any]:
    py = args.promptgym_python
    name = f"promptgym-{method}"
    split, stem = cell.dir / "split", slug(name)
    cmd = [str(Path(py).parent / "promptgym"), "optimize", "--train", str(split / "train.jsonl"),
           "--dev", str(split / "dev.jsonl"), "--test", str(split / "test.jsonl"), "--prompt", cell.description,
           "--task-model", f"openai:{task.alias}@{base_url}", "--optimizer-model", f"openai:{optimizer.alias}@{base_url}",
           "--budget", str(args.budget), "--method", method, "--seed", str(cell.seed), "--json", "--quiet"]
    if task.plain:
        cmd += ["--layout", "plain"]
    store = f"sqlite:///{cell.dir / f'{stem}.store.sqlite'}"
    env = dict(os.environ, PROMPTGYM_STORE=store, PROMPTGYM_CACHE=f"sqlite:///{cell.dir / f'{stem}.cache.sqlite'}",
               PROMPTGYM_OPENAI_CONCURRENCY=str(args.threads))
    for f in cell.dir.glob(f"{stem}.*.sqlite*"):
        f.unlink()  # a fresh store and cache: no answer from an earlier attempt reaches this one
    counter.reset(label=f"{name} {cell.dataset} {cell.seed}", budget=args.budget, phase="auto",
                  test_inputs=cell.test_inputs)
    print(f"[peers] {name} on {cell.dataset} seed {cell.seed}: {shlex.join(cmd)}", flush=True)
    status, rc, seconds, out = run_timed(cmd, cell.dir / f"{stem}.log", args.timeout, env=env)
    row: dict[str, Any] = {"peer": name, "dataset": cell.dataset, "seed": cell.seed, "framework": "promptgym",
                           "start_prompt": cell.description, "planned_calls": args.budget,
                           "planned_note": "--budget (promptgym's own hard cap: search, final selection and what "
                                           "comes before them)",
                           "wall_seconds": round(seconds, 1), "command": shlex.join(cmd)}
    summary = next((json.loads(line) for line in reversed(out.strip().splitlines()) if line.startswith("{")), None)
    if status == "timeout":
        row.update(status="timeout", error=f"no result within --timeout {args.timeout:.0f} s (killed)")
    elif rc != 0 or summary is None:
        row.update(status="crashed", error=last_line((cell.dir / f"{stem}.log").read_text(errors="replace")))
    else:
        (cell.dir / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
        scores = subprocess.run([py, str(HERE / "promptgym_scores.py"), "--store", store, "--run-id",
                                 summary["run_id"], "--test-size", str(cell.n_test)],
                                check=True, capture_output=True, text=True).stdout
        row.update(json.loads(scores))
        row.update(status="ok", error=None, final_prompt=summary.get("best_prompt"),
                   promptgym_llm_calls=summary.get("llm_calls"), promptgym_budget_used=summary.get("budget_used"),
                   kept_start=summary.get("kept_start"), verdict=summary.get("verdict"),
                   scoring=(summary.get("stats") or {}).get("scoring"),
                   method_best_prompt=summary.get("method_best_prompt"))
    row.update(phase_stats(counter.stats()))
    return with_test_stats(row, cell.seed)


def make_cell(args: argparse.Namespace, run_dir: Path, dataset: str, seed: int) -> Cell:
    """promptgym's own split of one task for one seed, and the test inputs the proxy tells test calls
    of promptgym by (those also found in a train or dev input, or in the start, are left out)."""
    cell_dir = run_dir / slug(dataset) / f"seed{seed}"
    (cell_dir / "split").mkdir(parents=True, exist_ok=True)
    subprocess.run([args.promptgym_python, str(HERE / "make_split.py"), "--dataset", dataset, "--seed", str(seed),
                    "--train-size", str(args.train_size), "--dev-size", str(args.dev_size), "--test-size",
                    str(args.test_size), "--out", str(cell_dir / "split")], check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((cell_dir / "split/split.json").read_text())
    seen = [r["input"] for part in ("train", "dev") for r in read_jsonl(cell_dir / f"split/{part}.jsonl")]
    test = [r["input"] for r in read_jsonl(cell_dir / "split/test.jsonl")]
    keys = [t for t in test if not any(t in s for s in seen) and t not in meta["description"]]
    return Cell(dataset, seed, cell_dir, meta["description"], len(test), keys)


def trimmed(row: dict[str, Any]) -> dict[str, Any]:
    """A row as kept in the results file: the answers and tracebacks stay in the run directory."""
    return {k: v for k, v in row.items() if not k.endswith("_answers") and k != "traceback"}


def load_previous(out: Path, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an earlier run into the same file (to resume it), if its settings agree."""
    if not out.exists():
        return []
    old = json.loads(out.read_text())
    differ = [k for k in SAME if old.get("config", {}).get(k) != config.get(k)]
    if differ:
        raise SystemExit(f"{out} was made with other settings ({', '.join(differ)} differ): "
                         "use another --out, or remove it to start over")
    return [r for r in old.get("rows", []) if "dataset" in r]


def constant_answers(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task and seed of the rows: the test scores (0/1, test file order) of always answering the
    most common train+dev label, read from the run directory's split; where the split is not on this
    machine (the run directory is not committed), the scores the results file already has."""
    kept = {(c["dataset"], c["seed"]): c for c in result.get("constant", [])}
    run_dir = Path(result.get("config", {}).get("run_dir") or "-")
    out = []
    for dataset, seed in dict.fromkeys((r["dataset"], r["seed"]) for r in result.get("rows", [])):
        split = run_dir / slug(dataset) / f"seed{seed}" / "split"
        if (split / "test.jsonl").exists():
            seen = Counter(r["target"] for part in ("train", "dev") for r in read_jsonl(split / f"{part}.jsonl"))
            label = seen.most_common(1)[0][0]
            out.append({"dataset": dataset, "seed": seed, "label": label,
                        "test": [int(r["target"] == label) for r in read_jsonl(split / "test.jsonl")]})
        elif (dataset, seed) in kept:
            out.append(kept[(dataset, seed)])
    return out


def write(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """``result`` summarized (table.summarize) into OUT and its markdown table; returns the summary."""
    result = summarize(dict(result, constant=constant_answers(result)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    return result


def say_verdicts(summary: dict[str, Any]) -> None:
    """Per task, in one line each: who is ahead by test accuracy and by gain over the own start."""
    for v in summary["versus"] + summary["versus_gain"]:
        print(f"[peers] {v['dataset']}, by {v['by']}: {verdict(v)}", flush=True)


def merge(files: list[Path], out: Path) -> None:
    """One result from several run.py files made with the same settings (e.g. halves run side by
    side, one set of servers each); a later file's row of the same system, task and seed wins."""
    parts = [json.loads(f.read_text()) for f in files]
    for f, part in zip(files[1:], parts[1:]):
        differ = [k for k in SAME if part["config"].get(k) != parts[0]["config"].get(k)]
        if differ:
            raise SystemExit(f"{f}: {', '.join(differ)} differ from {files[0]}; not merged")
    rows = {(r["peer"], r["dataset"], r["seed"]): r for part in parts for r in part["rows"]}
    config = dict(parts[0]["config"],
                  datasets=list(dict.fromkeys(d for p in parts for d in p["config"]["datasets"])),
                  seeds=sorted({s for p in parts for s in p["config"]["seeds"]}))
    result = {"config": config, "rows": list(rows.values()), "seconds": round(sum(p.get("seconds", 0) for p in parts), 1),
              "merged_from": [dict(file=str(f), started=p["config"]["started"], command=p["config"]["command"])
                              for f, p in zip(files, parts)]}
    say_verdicts(write(result, out))
    print(f"[peers] merged {len(files)} files into {out} and {out.with_suffix('.md')}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", "--dataset", default="example:sentiment", help="comma list of promptgym datasets")
    ap.add_argument("--seeds", "--seed", default="0", help="comma list of seeds (each: its own split and search)")
    ap.add_argument("--budget", type=int, default=300, help="calls before the test, per system and run")
    ap.add_argument("--train-size", type=int, default=20)
    ap.add_argument("--dev-size", type=int, default=75)
    ap.add_argument("--test-size", type=int, default=150)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/peers.json"))
    ap.add_argument("--run-dir", default=None, help="default: OUT without .json, + '-run'")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {', '.join(PEERS)} ('' for none)")
    ap.add_argument("--promptgym-methods", default="ape,opro,evoprompt-ga",
                    help="promptgym methods, comma list (brackets allowed: 'grips[format_edits=false]')")
    ap.add_argument("--no-promptgym", action="store_true", help="skip promptgym's own methods")
    ap.add_argument("--promptgym-python", default=None, help="python of promptgym's venv (default: REPO/.venv)")
    ap.add_argument("--task-model", default="embedded",
                    help="promptgym spec of the task model: embedded (SmolLM2), gemma3-270m (a base model), gguf:PATH")
    ap.add_argument("--optimizer-model", default="embedded", help="the optimizer / reflection model, likewise")
    ap.add_argument("--task-plain", action="store_true",
                    help="the task model (gguf:PATH) is a base model: plain completion, promptgym's plain layout")
    ap.add_argument("--task-server-url", default=None, help="use this running server for the task model")
    ap.add_argument("--optimizer-server-url", default=None, help="use this running server for the optimizer model")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2, help="each server's threads, and each client's concurrency")
    ap.add_argument("--nice", type=int, default=0, help="run the model servers under nice -n N")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per row (search + test)")
    ap.add_argument("--until", default=None, metavar="HH:MM",
                    help="start no row after this time (UTC); the run stops at a row boundary, to be resumed")
    ap.add_argument("--retry-failed", action="store_true", help="run crashed and timed-out rows again")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="run nothing: the rows of result files made with the same settings into --out and its table")
    return ap.parse_args(argv)


def split_methods(text: str) -> list[str]:
    """``a,b[x=1,y=2]`` -> ``["a", "b[x=1,y=2]"]``: commas inside brackets stay."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    return [i for i in items + [current.strip()] if i]


def main() -> None:
    args = parse_args()
    if args.merge:
        merge([Path(f) for f in args.merge], Path(args.out))
        return
    args.promptgym_python = args.promptgym_python or default_promptgym_python()
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}: {', '.join(PEERS)}")
    methods = [] if args.no_promptgym else split_methods(args.promptgym_methods)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.stem + "-run")
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    until = deadline(args.until, t0)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill <pid> stops like Ctrl-C

    task = resolve_model(args.promptgym_python, args.task_model, args.task_plain)
    optimizer = task if args.optimizer_model == args.task_model else resolve_model(
        args.promptgym_python, args.optimizer_model, False)
    task.url = (args.task_server_url or "").rstrip("/").removesuffix("/v1")
    if optimizer is not task:
        optimizer.url = (args.optimizer_server_url or "").rstrip("/").removesuffix("/v1")
    models = [task] if optimizer is task else [task, optimizer]
    config: dict[str, Any] = {
        "datasets": datasets, "seeds": seeds, "budget": args.budget, "train_size": args.train_size,
        "dev_size": args.dev_size, "test_size": args.test_size, "task_model": args.task_model,
        "optimizer_model": args.optimizer_model, "task_plain": task.plain, "task_model_file": Path(task.path).name,
        "optimizer_model_file": Path(optimizer.path).name, "n_ctx": args.n_ctx, "threads": args.threads,
        "timeout": args.timeout, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "run_dir": str(run_dir), "command": shlex.join([sys.executable] + sys.argv)}
    previous = load_previous(out, config)
    if previous:
        old = json.loads(out.read_text())["config"]
        config.update(datasets=list(dict.fromkeys(old.get("datasets", []) + datasets)),
                      seeds=sorted(set(old.get("seeds", [])) | set(seeds)), started=old.get("started"))
    rows = {(r["peer"], r["dataset"], r["seed"]): r for r in previous}
    result: dict[str, Any] = {"config": config, "rows": list(rows.values()),
                              "seconds": json.loads(out.read_text()).get("seconds", 0) if previous else 0}
    seconds_before = result["seconds"]
    finals = DONE[:1] if args.retry_failed else DONE

    def save(row: dict[str, Any] | None = None) -> dict[str, Any]:
        if row is not None:
            rows[(row["peer"], row["dataset"], row["seed"])] = trimmed(row)
            result["rows"] = list(rows.values())
        result["seconds"] = round(seconds_before + time.time() - t0, 1)
        return write(result, out)

    ensure_served(models, args, run_dir)
    proxy, counter = serve(models[0].url, routes={m.alias: Route(m.url, m.plain) for m in models})
    base_url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
    try:
        for dataset in datasets:
            for seed in seeds:
                systems = peers + [f"promptgym-{m}" for m in methods]
                todo = [s for s in systems if rows.get((s, dataset, seed), {}).get("status") not in finals]
                if not todo:
                    continue
                try:
                    cell = make_cell(args, run_dir, dataset, seed)
                except (subprocess.CalledProcessError, OSError, ValueError) as e:
                    for name in todo:
                        save({"peer": name, "dataset": dataset, "seed": seed, "status": "error",
                              "error": f"split not made: {type(e).__name__}: {e}"})
                    continue
                for name in todo:
                    if until is not None and time.time() >= until:
                        print(f"[peers] --until {args.until} reached: stopping before {name} on {dataset} "
                              f"seed {seed} (the same command resumes)", flush=True)
                        return
                    try:
                        ensure_served(models, args, run_dir)
                        if name.startswith("promptgym-"):
                            row = promptgym_row(name.removeprefix("promptgym-"), args, cell, base_url, counter,
                                                task, optimizer)
                        else:
                            row = peer_row(name, args, cell, base_url, counter, task, optimizer)
                    except KeyboardInterrupt:
                        print(f"[peers] interrupted: {name} on {dataset} seed {seed} stopped, not recorded "
                              f"(the same command resumes)", flush=True)
                        raise SystemExit(130) from None
                    except Exception as e:  # the harness's own failure: recorded, the run goes on
                        row = {"peer": name, "dataset": dataset, "seed": seed, "status": "error",
                               "error": f"harness: {type(e).__name__}: {str(e)[:500]}"}
                    save(row)  # an interrupt (Ctrl-C, SIGTERM) while a system runs leaves its row unrecorded
                    print(f"[peers] {name} on {dataset} seed {seed}: {row.get('status')} start "
                          f"{row.get('score_start')} final {row.get('score_final')} calls {row.get('calls_search')} "
                          f"(refused {row.get('refused_search')}) {row.get('error') or ''}", flush=True)
    finally:
        proxy.shutdown()
        for m in models:
            if m.process is not None:
                stop(m.process)
        say_verdicts(save())
        print(f"[peers] wrote {out} and {out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
