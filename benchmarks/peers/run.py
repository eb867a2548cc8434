"""Peers on the same work: DSPy (COPRO, MIPROv2, GEPA), promptolution (OPRO, EvoPrompt GA) and
promptgym's own methods, each optimizing the same task with the same local model behind the same
counting proxy, on the same split, with the same call budget. See README.md beside this file.

    benchmarks/peers/.venv/bin/python benchmarks/peers/run.py \
        --dataset example:sentiment --budget 200 --seed 0 \
        --train-size 20 --dev-size 30 --test-size 100 --out benchmarks/results/peers.json

Writes the JSON (one row per peer, rewritten after each peer), a markdown table beside it
(``.md``), and a run directory (split files, server and peer logs, each peer's own JSON).
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from common import paired, read_jsonl  # noqa: E402
from proxy import serve  # noqa: E402

DSPY = ("copro", "mipro", "gepa")
PROMPTOLUTION = ("opro", "evoprompt-ga")
PEERS = tuple(f"dspy-{p}" for p in DSPY) + tuple(f"promptolution-{p}" for p in PROMPTOLUTION)
ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_promptgym_python() -> str:
    for cand in (os.environ.get("PROMPTGYM_PYTHON"), REPO / ".venv/bin/python", Path("/work/main/.venv/bin/python")):
        if cand and Path(cand).exists():
            return str(cand)
    raise SystemExit("promptgym's python not found: pass --promptgym-python (or set PROMPTGYM_PYTHON)")


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def start_server(py: str, model: str, port: int, n_ctx: int, threads: int, nice: int, log: Path) -> subprocess.Popen:
    cmd = [py, "-m", "llama_cpp.server", "--model", model, "--model_alias", ALIAS, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "False",
           "--interrupt_requests", "False"]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
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
    return status, proc.returncode, time.time() - t0, out or ""


def phase_stats(stats: dict[str, Any]) -> dict[str, Any]:
    s, t = stats["phases"]["search"], stats["phases"]["test"]
    return {"calls_search": s["calls"], "refused_search": s["refused"], "server_errors_search": s["errors"],
            "calls_test": t["calls"], "tokens_search": s["prompt_tokens"] + s["completion_tokens"],
            "tokens_test": t["prompt_tokens"] + t["completion_tokens"],
            "prompt_tokens_search": s["prompt_tokens"], "completion_tokens_search": s["completion_tokens"],
            "model_seconds_search": round(s["seconds"], 1), "model_seconds_test": round(t["seconds"], 1),
            "request_fields": stats["params"]}


def peer_row(name: str, args: argparse.Namespace, run_dir: Path, base_url: str, counter) -> dict[str, Any]:
    framework, _, opt = name.partition("-")
    script = HERE / ("peer_dspy.py" if framework == "dspy" else "peer_promptolution.py")
    out = run_dir / f"{name}.json"
    cmd = [sys.executable, str(script), "--optimizer", opt, "--split", str(run_dir / "split"),
           "--base-url", base_url, "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(out)]
    counter.reset(label=name, budget=args.budget, phase="search")
    print(f"[peers] {name}: {shlex.join(cmd)}", flush=True)
    status, rc, seconds, _ = run_timed(cmd, run_dir / f"{name}.log", args.timeout)
    row: dict[str, Any] = {"peer": name}
    if out.exists():
        try:
            row.update(json.loads(out.read_text()))
        except ValueError:
            pass
    row["wall_seconds"] = round(seconds, 1)
    if status == "timeout":
        row["status"], row["error"] = "timeout", f"no result within --timeout {args.timeout:.0f} s (killed)" + (
            f" while in status {row.get('status')!r}" if row.get("status") else "")
    elif rc != 0 and row.get("status") not in ("crashed",):
        row["status"] = "crashed"
        row["error"] = row.get("error") or last_line((run_dir / f"{name}.log").read_text(errors="replace"))
    row.update(phase_stats(counter.stats()))
    if row.get("test_start") and row.get("test_final"):
        st, fi = row["test_start"], row["test_final"]
        row["score_start"], row["score_final"] = sum(st) / len(st), sum(fi) / len(fi)
        row["n_test"] = len(st)
        p = paired(st, fi, seed=args.seed)
        row.update({"delta": p["delta"], "interval": p["interval"], "p_value": p["mcnemar_p"],
                    "start_only_right": p["start_only"], "final_only_right": p["final_only"]})
    return row


def promptgym_row(method: str, args: argparse.Namespace, run_dir: Path, base_url: str, counter,
                  description: str, test_inputs: list[str]) -> dict[str, Any]:
    py = args.promptgym_python
    exe = str(Path(py).parent / "promptgym")
    split = run_dir / "split"
    model = f"openai:{ALIAS}@{base_url}"
    cmd = [exe, "optimize", "--train", str(split / "train.jsonl"), "--dev", str(split / "dev.jsonl"),
           "--test", str(split / "test.jsonl"), "--prompt", description, "--task-model", model,
           "--optimizer-model", model, "--budget", str(args.budget), "--method", method,
           "--seed", str(args.seed), "--json", "--quiet"]
    env = dict(os.environ, PROMPTGYM_STORE=f"sqlite:///{run_dir / f'promptgym-{method}.store.sqlite'}",
               PROMPTGYM_CACHE=f"sqlite:///{run_dir / f'promptgym-{method}.cache.sqlite'}",
               PROMPTGYM_OPENAI_CONCURRENCY=str(args.threads))
    for f in run_dir.glob(f"promptgym-{method}.*.sqlite"):
        f.unlink()  # a fresh cache: no answer from an earlier run reaches this one
    counter.reset(label=f"promptgym-{method}", budget=args.budget, phase="auto", test_inputs=test_inputs)
    print(f"[peers] promptgym-{method}: {shlex.join(cmd)}", flush=True)
    status, rc, seconds, out = run_timed(cmd, run_dir / f"promptgym-{method}.log", args.timeout, env=env)
    row: dict[str, Any] = {"peer": f"promptgym-{method}", "framework": "promptgym", "start_prompt": description,
                           "planned_calls": args.budget, "planned_note": "--budget (promptgym's own hard cap)",
                           "wall_seconds": round(seconds, 1), "command": shlex.join(cmd)}
    summary = None
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
                break
            except ValueError:
                pass
    if status == "timeout":
        row.update(status="timeout", error=f"no result within --timeout {args.timeout:.0f} s (killed)")
    elif rc != 0 or summary is None:
        row.update(status="crashed",
                   error=last_line((run_dir / f"promptgym-{method}.log").read_text(errors="replace")))
    else:
        row.update(status="ok", error=None, final_prompt=summary.get("best_prompt"),
                   score_start=summary.get("test_initial"), score_final=summary.get("test_best"),
                   delta=summary.get("test_delta"), interval=summary.get("test_interval"),
                   p_value=summary.get("test_p_value"), n_test=summary.get("test_size"),
                   promptgym_llm_calls=summary.get("llm_calls"), promptgym_budget_used=summary.get("budget_used"),
                   kept_start=summary.get("kept_start"), verdict=summary.get("verdict"),
                   method_best_prompt=summary.get("method_best_prompt"))
        (run_dir / f"promptgym-{method}.json").write_text(json.dumps(summary, indent=1) + "\n")
    row.update(phase_stats(counter.stats()))
    return row


def fmt(x: Any, pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else str(x)


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [f"# Peers on the same work: {c['dataset']}", "",
             f"Model: {c['model']} behind llama.cpp's server (n_ctx {c['n_ctx']}), via the counting proxy. "
             f"Split (seed {c['seed']}): train {c['train_size']}, dev {c['dev_size']}, test {c['test_size']}. "
             f"Budget: {c['budget']} calls during the search (counted at the proxy; refused beyond). "
             f"Test calls are counted apart and not charged. Started {c['started']}, "
             f"{result.get('seconds', 0) / 60:.0f} min in all.", "",
             "| peer | status | test start % | test final % | delta (95% CI) | p | search calls (planned) | refused | test calls | search tokens | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ci = r.get("interval")
        delta = "-" if r.get("delta") is None else (
            f"{100 * r['delta']:+.1f} ({100 * ci[0]:+.1f}, {100 * ci[1]:+.1f})" if ci else f"{100 * r['delta']:+.1f}")
        p = "-" if r.get("p_value") is None else f"{r['p_value']:.3f}"
        lines.append(f"| {r['peer']} | {r.get('status')} | {fmt(r.get('score_start'))} | {fmt(r.get('score_final'))} "
                     f"| {delta} | {p} | {r.get('calls_search', '-')} ({r.get('planned_calls', '-')}) "
                     f"| {r.get('refused_search', '-')} | {r.get('calls_test', '-')} | {r.get('tokens_search', '-')} "
                     f"| {r.get('wall_seconds', '-')} |")
    lines += ["", "## Failures and notes", ""]
    for r in result["rows"]:
        if r.get("error"):
            lines.append(f"- **{r['peer']}** ({r.get('status')}): {r['error']}")
    lines += ["", "## Final prompts", ""]
    for r in result["rows"]:
        if r.get("final_prompt"):
            text = " ".join(str(r["final_prompt"]).split())
            lines.append(f"- **{r['peer']}**: {text[:400]}{'...' if len(text) > 400 else ''}")
    return "\n".join(lines) + "\n"


def merge(files: list[Path], out: Path) -> None:
    """One result from several run.py files whose split and budget agree (the split is a function of
    dataset, seed and sizes, so their peers saw the same rows); a later file's row of the same peer wins."""
    parts = [json.loads(f.read_text()) for f in files]
    same = ("dataset", "budget", "seed", "train_size", "dev_size", "test_size", "model")
    for f, part in zip(files[1:], parts[1:]):
        differ = [k for k in same if part["config"].get(k) != parts[0]["config"].get(k)]
        if differ:
            raise SystemExit(f"{f}: {', '.join(differ)} differ from {files[0]}; not merged")
    rows = {r["peer"]: r for part in parts for r in part["rows"]}
    result = dict(parts[0], rows=list(rows.values()), seconds=round(sum(p.get("seconds", 0) for p in parts), 1),
                  merged_from=[dict(file=str(f), started=p["config"]["started"], command=p["config"]["command"])
                               for f, p in zip(files, parts)])
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"[peers] merged {len(files)} files into {out} and {out.with_suffix('.md')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="example:sentiment")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, default=20)
    ap.add_argument("--dev-size", type=int, default=30)
    ap.add_argument("--test-size", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/peers.json"))
    ap.add_argument("--run-dir", default=None, help="default: OUT without .json, + '-run'")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {', '.join(PEERS)} ('' for none)")
    ap.add_argument("--promptgym-methods", default="ape,opro,evoprompt-ga")
    ap.add_argument("--no-promptgym", action="store_true", help="skip promptgym's own methods")
    ap.add_argument("--promptgym-python", default=None, help="python of promptgym's venv (default: REPO/.venv)")
    ap.add_argument("--model-path", default=None, help="GGUF (default: promptgym's embedded model)")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2, help="server threads, and each client's concurrency")
    ap.add_argument("--server-url", default=None,
                    help="use this running server (http://127.0.0.1:P) instead of starting one")
    ap.add_argument("--nice", type=int, default=0, help="run the model server under nice -n N")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per peer (search + test)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="run nothing: the rows of result files made with the same dataset, seed, split sizes and "
                         "budget (e.g. two halves run side by side, one server each) into --out and its table")
    args = ap.parse_args()
    if args.merge:
        merge([Path(f) for f in args.merge], Path(args.out))
        return
    args.promptgym_python = args.promptgym_python or default_promptgym_python()
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}: {', '.join(PEERS)}")
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.stem + "-run")
    (run_dir / "split").mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.time()

    # (a) promptgym's own split
    subprocess.run([args.promptgym_python, str(HERE / "make_split.py"), "--dataset", args.dataset,
                    "--seed", str(args.seed), "--train-size", str(args.train_size), "--dev-size",
                    str(args.dev_size), "--test-size", str(args.test_size), "--out", str(run_dir / "split")],
                   check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((run_dir / "split/split.json").read_text())
    test_inputs = [r["input"] for r in read_jsonl(run_dir / "split/test.jsonl")]
    model = args.model_path or subprocess.run(
        [args.promptgym_python, "-c",
         "from promptgym.models.llama_cpp_backend import embedded_model_path; print(embedded_model_path())"],
        check=True, capture_output=True, text=True).stdout.strip()

    # (b) the server and the proxy
    if args.server_url:
        server, upstream = None, args.server_url.rstrip("/").removesuffix("/v1")
    else:
        server_port = free_port()
        print(f"[peers] starting llama_cpp.server on 127.0.0.1:{server_port} ({model})", flush=True)
        server = start_server(args.promptgym_python, model, server_port, args.n_ctx, args.threads, args.nice,
                              run_dir / "server.log")
        upstream = f"http://127.0.0.1:{server_port}"
    proxy, counter = serve(upstream)
    base_url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
    result: dict[str, Any] = {
        "config": {"dataset": args.dataset, "budget": args.budget, "seed": args.seed, "train_size": args.train_size,
                   "dev_size": args.dev_size, "test_size": args.test_size, "model": Path(model).name,
                   "n_ctx": args.n_ctx, "threads": args.threads, "timeout": args.timeout, "started": started,
                   "start_prompt": meta["description"], "labels": meta["labels"], "run_dir": str(run_dir),
                   "command": shlex.join([sys.executable] + sys.argv)},
        "rows": []}

    def save() -> None:
        result["seconds"] = round(time.time() - t0, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        out.with_suffix(".md").write_text(markdown(result))

    try:
        # (c-e) each peer in its own process
        for name in peers:
            row = peer_row(name, args, run_dir, base_url, counter)
            result["rows"].append(row)
            save()
            print(f"[peers] {name}: {row.get('status')} start {fmt(row.get('score_start'))} final "
                  f"{fmt(row.get('score_final'))} search calls {row.get('calls_search')} "
                  f"(refused {row.get('refused_search')}) {row.get('error') or ''}", flush=True)
        # (f) promptgym's own methods through the same server and proxy
        if not args.no_promptgym:
            help_text = subprocess.run([str(Path(args.promptgym_python).parent / "promptgym"), "optimize", "--help"],
                                       capture_output=True, text=True).stdout
            has_split_flags = all(re.search(rf"{f}\s", help_text) for f in ("--train", "--dev", "--test"))
            for method in [m for m in args.promptgym_methods.split(",") if m]:
                if not has_split_flags:
                    row = {"peer": f"promptgym-{method}", "framework": "promptgym", "status": "skipped",
                           "error": "this promptgym's optimize has no --train/--dev/--test flags"}
                else:
                    row = promptgym_row(method, args, run_dir, base_url, counter, meta["description"], test_inputs)
                result["rows"].append(row)
                save()
                print(f"[peers] promptgym-{method}: {row.get('status')} start {fmt(row.get('score_start'))} "
                      f"final {fmt(row.get('score_final'))} search calls {row.get('calls_search')} "
                      f"{row.get('error') or ''}", flush=True)
    finally:
        proxy.shutdown()
        if server is not None:
            stop(server)
        save()
    print(f"[peers] wrote {out} and {out.with_suffix('.md')}", flush=True)


if __name__ == "__main__":
    main()
