"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, ...) via the official SDK.

Retries with exponential backoff on 408/409/429/5xx, timeouts and connection errors are the SDK's
own (``max_retries``; a server's ``Retry-After``/``retry-after-ms`` header sets the wait when it is
positive); requests run concurrently up to ``max_concurrency``.

Decisions:
- Every failure that reaches the caller is one ``PromptgymError`` line naming the endpoint and the
  model, with the HTTP status and the server's own message, plus a hint for the usual causes
  (server not running, wrong key, wrong model name or base URL without ``/v1``).
- Concurrency, retries and timeout are constructor arguments; CLI users (whose model spec has no
  room for them) set ``PROMPTGYM_OPENAI_CONCURRENCY`` (8), ``PROMPTGYM_OPENAI_RETRIES`` (6) and
  ``PROMPTGYM_OPENAI_TIMEOUT`` (120 s). A refused connection is retried like any transient failure
  (a server may be restarting), so a wrong port fails only after the retries' backoff (~20 s at 6).
- A base URL must be ``http(s)://...``: without a scheme the SDK would only fail at the first call
  with an opaque "Connection error."
- ``logprob_scoring=True`` scores choice options over ``/v1/completions`` with ``echo=True`` and
  ``logprobs``: one request per option (prompt + option), ``max_tokens=1`` (``0`` means "no limit" on
  some servers), and the option's log-probability is the sum over the echoed tokens that overlap the
  option's characters (a token straddling the prompt/option boundary counts for the option). Only
  raw-text layouts (``plain``) can be scored this way: a remote server's chat template is unknown.
  Off by default because few servers return correct echoed prompt log-probs: OpenAI's own API and
  llama.cpp's C++ server do not return them; llama-cpp-python 0.3.x returns them shifted by one
  position (checked here: P(" of" | "The") reads -0.66 over HTTP, -4.53 in-process; see
  abetlen/llama-cpp-python#1983), so do not enable it there; vLLM is the intended target.
- Embeddings go to ``/v1/embeddings`` (``embedding_model``, by default the generation model: a
  local server serves both from one model; OpenAI's own API needs an embedding model's name, or
  ``PROMPTGYM_OPENAI_EMBEDDING_MODEL``), ``EMBED_BATCH`` texts per request. A server that answers
  one vector per token (llama.cpp without pooling) is mean-pooled here; the batch's token count is
  shared out over its texts.
- Faults (docs/reliability.md): every HTTP attempt that fails (429/5xx, reset, timeout) is counted by
  kind through a wrapper around the SDK's transport, so the SDK keeps its retries and the ledger
  still sees each fault. What the SDK cannot retry -- a 200 whose JSON is cut short (``truncated``),
  a well-formed answer with empty (``empty``) or nonsense (``garbage``) content, no echoed
  log-probs (``no_logprobs``) -- is retried here, ``ANSWER_RETRIES`` more times at most. A call that
  is still bad is a *failed call*: an empty answer (score: all options 0) marked ``failed`` in
  ``last_faults``, which the evaluator records in the ledger and never caches. If no call of this
  backend has ever been answered well, the same failure is instead the old one-line error (a
  server that is not OpenAI-compatible, or never returns log-probs, is a setup error, not a fault).
  ``last_faults`` (kind -> count) is set for each result just before ``on_result`` is called.
- ``preflight()`` (called at run start for HTTP backends): ``GET /models`` with a short timeout
  (``PREFLIGHT_TIMEOUT`` s at most; a refused or reset connection is tried once more after 0.5 s,
  a silent server is not), so a dead endpoint fails in seconds with one line,
  before any work; any HTTP answer but 401/403 counts as alive (some servers lack ``/models``).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import os
import sys
import threading
import time
from typing import Any, Sequence

from promptgym.errors import PromptgymError
from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OnResult,
                                   OptionScores, ScoreRequest)

OPENAI_URL = "https://api.openai.com/v1"
EMBED_BATCH = 32
ANSWER_RETRIES = 3  # extra attempts for an answer the SDK accepted but is unusable
PREFLIGHT_TIMEOUT = 5.0

# The faults of the logical call being made (kind -> count); each worker task sets its own dict.
_FAULTS: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("promptgym_faults", default=None)


def _note(kind: str) -> None:
    faults = _FAULTS.get()
    if faults is not None:
        faults[kind] = faults.get(kind, 0) + 1


class _BadAnswer(Exception):
    """An answer the SDK accepted but that cannot be used; ``kind`` names the fault."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class OpenAIBackend:
    """Chat completions for chat-shaped requests, completions for raw-text requests.

    By default log-probability scoring is not offered (few chat APIs return prompt log-probs):
    choice tasks on this backend generate an answer and match it to an option instead.
    """

    supports_scoring = False
    supports_embedding = True

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int | None = None, max_retries: int | None = None,
                 timeout: float | None = None, logprob_scoring: bool = False,
                 embedding_model: str | None = None):
        try:
            import openai
        except ImportError:
            raise PromptgymError("the OpenAI-compatible backend needs the SDK: pip install 'promptgym[openai]'") from None
        max_concurrency = _setting(max_concurrency, "PROMPTGYM_OPENAI_CONCURRENCY", 8, int)
        max_retries = _setting(max_retries, "PROMPTGYM_OPENAI_RETRIES", 6, int)
        timeout = _setting(timeout, "PROMPTGYM_OPENAI_TIMEOUT", 120.0, float)
        self.embedding_model = _setting(embedding_model, "PROMPTGYM_OPENAI_EMBEDDING_MODEL", model, str)
        base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip() or None
        if base_url and not base_url.startswith(("http://", "https://")):
            raise PromptgymError(f"openai backend: base URL '{base_url}' must start with http:// or https:// "
                                 "(e.g. openai:MODEL@http://127.0.0.1:8000/v1)")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        from promptgym.models.factory import redact_url, remember_secret

        remember_secret(api_key)
        shown_url = redact_url(base_url) if base_url else None  # what is stored and printed
        if not api_key:
            if not base_url:
                raise PromptgymError("openai backend: set OPENAI_API_KEY (or give a base URL of a local server)")
            api_key = "unused"  # local servers usually ignore the key
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise PromptgymError(f"openai backend: need max_concurrency >= 1, max_retries >= 0 and timeout > 0 "
                                 f"(got {max_concurrency}, {max_retries}, {timeout:g})")
        self.model = model
        self.base_url = shown_url  # the key stays in the client's arguments only, in memory
        self.endpoint = (shown_url or OPENAI_URL).rstrip("/")
        # The context size is unknown over HTTP: PROMPTGYM_OPENAI_CONTEXT (tokens) sets it for the
        # long-input check; None skips the check.
        self.context_limit = _setting(None, "PROMPTGYM_OPENAI_CONTEXT", None, int)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.supports_scoring = logprob_scoring
        self._client_args = dict(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout)
        self._openai = openai
        self.answer_retries = min(ANSWER_RETRIES, max_retries)
        self.last_faults: dict[str, int] = {}
        self._answered_ok = False  # any well-formed answer yet (see the module docstring)
        self.identity = f"openai:{shown_url or 'api.openai.com'}:{model}"
        if self.embedding_model != model:  # vectors are cached under the identity
            self.identity += f"+embed:{self.embedding_model}"

    # -- generation ------------------------------------------------------------------------------

    async def _one(self, client, request: GenerationRequest) -> Completion:
        seed = int(hashlib.sha256(repr(request).encode()).hexdigest()[:8], 16)
        common: dict[str, Any] = dict(model=self.model, max_tokens=request.max_tokens,
                                      temperature=request.temperature, top_p=request.top_p, seed=seed)
        if request.stop:
            common["stop"] = list(request.stop)[:4]  # the OpenAI API accepts at most four
        if request.messages is not None:
            messages = [{"role": r, "content": c} for r, c in request.messages]
            if request.answer_prefix:  # no portable assistant prefill: cue the answer in the user turn
                messages[-1]["content"] += "\n" + request.answer_prefix

            async def attempt() -> Completion:
                resp = await client.chat.completions.create(messages=messages, **common)
                choice = self._first_choice(resp, "chat/completions")
                return self._completion(resp, getattr(getattr(choice, "message", None), "content", None),
                                        "chat/completions")
        else:
            async def attempt() -> Completion:
                resp = await client.completions.create(prompt=(request.text or "") + request.answer_prefix, **common)
                return self._completion(resp, getattr(self._first_choice(resp, "completions"), "text", None),
                                        "completions")

        return await self._retry_bad(attempt, Completion(text=""))

    def _completion(self, resp: Any, text: Any, route: str) -> Completion:
        if text is not None and not isinstance(text, str):
            raise _BadAnswer("garbage", f"{self._where()}: /{route} answered a {type(text).__name__} as text")
        if not text:
            raise _BadAnswer("empty", f"{self._where()}: /{route} answered empty text")
        prompt_tokens, completion_tokens = _usage(resp)
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def _retry_bad(self, attempt, failed: Any) -> Any:
        """``attempt()`` again (at most ``answer_retries`` more times) while its answer is unusable;
        then ``failed``, marked in the call's faults -- or the one-line error if nothing this
        backend asked was ever answered well."""
        for tries in range(self.answer_retries + 1):
            try:
                result = await attempt()
            except json.JSONDecodeError:
                _note("truncated")
                problem = _BadAnswer("truncated", f"{self._where()}: the server's JSON answer was cut short")
            except _BadAnswer as exc:
                _note(exc.kind)
                problem = exc
            else:
                self._answered_ok = True
                return result
        if not self._answered_ok:
            raise PromptgymError(str(problem))
        _note("failed")
        return failed

    def _first_choice(self, resp: Any, route: str) -> Any:
        choices = getattr(resp, "choices", None) if not isinstance(resp, (str, bytes)) else None
        if not choices or not isinstance(choices, list):
            raise _BadAnswer("garbage", f"{self._where()}: /{route} answered without any choice "
                                        f"(is this an OpenAI-compatible server?)")
        return choices[0]

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        self._call(self._one, requests, on_result)

    # -- option scoring over /v1/completions ---------------------------------------------------

    async def _score_one(self, client, request: ScoreRequest, semaphore: asyncio.Semaphore) -> OptionScores:
        if request.messages is not None:
            raise PromptgymError(f"{self._where()}: log-probability scoring over /completions needs a raw-text "
                                 "layout (--layout plain): a remote server's chat template is unknown")
        context = (request.text or "") + request.answer_prefix

        async def option(continuation: str) -> tuple[float, int, int]:
            async def attempt() -> tuple[float, int, int]:
                async with semaphore:
                    resp = await client.completions.create(model=self.model, prompt=context + continuation,
                                                           max_tokens=1, temperature=0.0, echo=True, logprobs=1)
                return self._option_logprob(resp, context, continuation)

            return await self._retry_bad(attempt, (0.0, 1, 0))

        parts = await asyncio.gather(*(option(c) for c in request.continuations))
        return OptionScores(logprobs=tuple(p[0] for p in parts), token_counts=tuple(p[1] for p in parts),
                            prompt_tokens=max((p[2] for p in parts), default=0))

    def _option_logprob(self, resp: Any, context: str, continuation: str) -> tuple[float, int, int]:
        choice = self._first_choice(resp, "completions")
        lp = getattr(choice, "logprobs", None)
        offsets = list(getattr(lp, "text_offset", None) or [])
        values = list(getattr(lp, "token_logprobs", None) or [])
        tokens = list(getattr(lp, "tokens", None) or [])
        if not offsets or len(offsets) != len(values) or len(tokens) != len(values):
            raise _BadAnswer("no_logprobs", f"{self._where()}: /completions returned no echoed prompt log-probabilities "
                                 "(the server does not support echo=True with logprobs; use --scoring generate)")
        start, end = len(context), len(context) + len(continuation)
        total, count = 0.0, 0
        for offset, value, token in zip(offsets, values, tokens):
            lo, hi = offset, offset + len(token)
            if lo >= end:  # generated tokens (and anything after the option) do not count
                break
            if hi > start:
                if value is None:
                    raise PromptgymError(f"{self._where()}: /completions gave no log-probability for the "
                                         f"option token {token!r}")
                total += float(value)
                count += 1
        if count == 0:
            raise PromptgymError(f"{self._where()}: could not locate option {continuation!r} in the echoed tokens")
        prompt_tokens, _ = _usage(resp)
        return total, count, prompt_tokens

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        if not self.supports_scoring:
            raise PromptgymError(f"{self._where()}: log-probability scoring is not enabled for this backend; "
                                 "use --scoring generate")
        self._call(self._score_one, requests, on_result, per_request_semaphore=False)

    # -- embeddings over /v1/embeddings ---------------------------------------------------------

    async def _embed_batch(self, client, texts: list[str]) -> list[Embedding]:
        resp = await client.embeddings.create(model=self.embedding_model, input=texts, encoding_format="float")
        rows = sorted(getattr(resp, "data", None) or [], key=lambda d: d.index)
        if len(rows) != len(texts):
            raise PromptgymError(f"{self._where(self.embedding_model)}: /embeddings answered {len(rows)} vectors for "
                                 f"{len(texts)} texts (is this an OpenAI-compatible server?)")
        share, extra = divmod(_usage(resp)[0], len(texts))
        out = []
        for k, row in enumerate(rows):
            vector = [float(x) for x in _mean_if_per_token(row.embedding)]
            out.append(Embedding(tuple(vector), prompt_tokens=share + (k < extra)))
        return out

    def embed(self, requests: Sequence[EmbeddingRequest], on_result: OnResult) -> None:
        texts = [r.text for r in requests]
        batches = [texts[i:i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]

        def per_text(batch: int, vectors: list[Embedding]) -> None:
            for k, vector in enumerate(vectors):
                on_result(batch * EMBED_BATCH + k, vector)

        self._call(self._embed_batch, batches, per_text, model=self.embedding_model)

    # -- plumbing ----------------------------------------------------------------------------------

    def _call(self, one, requests: Sequence, on_result: OnResult, per_request_semaphore: bool = True,
              model: str | None = None) -> None:
        try:
            _run_sync(self._run(one, requests, on_result, per_request_semaphore))
        except self._openai.OpenAIError as exc:
            from promptgym.models.factory import scrub

            raise PromptgymError(scrub(self.describe(exc, model))) from None

    async def _run(self, one, requests: Sequence, on_result: OnResult, per_request_semaphore: bool) -> None:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._openai.AsyncOpenAI(**self._client_args, http_client=_counting_client(self._openai)) as client:
            async def worker(i: int, request) -> None:
                faults: dict[str, int] = {}
                _FAULTS.set(faults)  # this task's own context (scoring's option tasks share the dict)
                if per_request_semaphore:
                    async with semaphore:
                        result = await one(client, request)
                else:  # scoring takes the semaphore per HTTP request (one per option)
                    result = await one(client, request, semaphore)
                self.last_faults = faults
                on_result(i, result)  # same thread as the caller's event loop: safe to persist

            tasks = [asyncio.create_task(worker(i, r)) for i, r in enumerate(requests)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    @staticmethod
    def count_tokens(text: str) -> int:
        """A cheap estimate (no tokenizer over HTTP): a token per three characters."""
        return -(-len(text) // 3)

    def preflight(self) -> None:
        """Fail in seconds, with one line, if nothing answers at the endpoint (see the docstring)."""
        openai = self._openai
        timeout = min(self.timeout, PREFLIGHT_TIMEOUT)
        args = dict(self._client_args, max_retries=0, timeout=timeout)
        for tries in (1, 2):  # a refused or reset connection is tried once more; a silent server is not
            try:
                with openai.OpenAI(**args) as client:
                    client.models.list()
                return
            except openai.APITimeoutError:
                raise PromptgymError(f"{self._where()}: no answer to GET /models within {timeout:g}s at run start; "
                                     "is the server up (and not stuck)?") from None
            except openai.APIConnectionError as exc:
                if tries == 2 or self.max_retries == 0:
                    raise PromptgymError(f"{self._where()}: cannot connect at run start ({_root_cause(exc)}); "
                                         "is the server running at that address?") from None
                time.sleep(0.5)
            except openai.APIStatusError as exc:
                if exc.status_code in (401, 403):
                    raise PromptgymError(self.describe(exc)) from None
                return
            except (ValueError, openai.OpenAIError):
                return  # something answered: alive

    def _where(self, model: str | None = None) -> str:
        return f"openai endpoint {self.endpoint} (model '{model or self.model}')"

    def describe(self, exc: Exception, model: str | None = None) -> str:
        """One line for an SDK error: where (``model``: the one asked, if not the generation
        model), what the server said, and the likely fix."""
        openai = self._openai
        where = self._where(model)
        if isinstance(exc, openai.APITimeoutError):
            return (f"{where}: no answer within {self.timeout:g}s "
                    f"(after {self.max_retries} retries); is the server overloaded?")
        if isinstance(exc, openai.APIConnectionError):
            cause = _root_cause(exc)
            return f"{where}: cannot connect ({cause}); is the server running at that address?"
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _server_message(exc)
            hint = {
                401: "check OPENAI_API_KEY",
                403: "check OPENAI_API_KEY and the key's permissions",
                404: "check the model name and that the base URL ends in /v1",
                429: f"still rate limited after {self.max_retries} retries",
            }.get(status, f"still failing after {self.max_retries} retries" if status >= 500 else "")
            return f"{where}: HTTP {status}: {message}" + (f" ({hint})" if hint else "")
        return f"{where}: {exc.__class__.__name__}: {_short(exc)}"


def _counting_client(openai: Any) -> Any:
    """The SDK's default async HTTP client over a transport that notes each failed attempt's kind
    (``http_429``, ``http_503``, ``timeout``, ``connection``, ...) in the current call's faults."""
    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    httpx = sys.modules[base.__module__.split(".")[0]]

    class Counting(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1000,
                                                                      max_keepalive_connections=100))

        async def handle_async_request(self, request):
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TimeoutException:
                _note("timeout")
                raise
            except httpx.TransportError:
                _note("connection")
                raise
            if response.status_code in (408, 409, 429) or response.status_code >= 500:
                _note(f"http_{response.status_code}")
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    return openai.DefaultAsyncHttpxClient(transport=Counting())


def _setting(value, env: str, default, kind):
    """Constructor argument, else environment variable (how CLI users tune it), else default."""
    if value is not None:
        return kind(value)
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise PromptgymError(f"{env}={raw!r}: expected a number") from None


def _root_cause(exc: BaseException) -> str:
    """The socket-level reason (e.g. "[Errno 111] Connection refused") under the SDK's and httpx's
    generic wrappers, else the closest wrapper's message."""
    best, seen = "", set()
    current: BaseException | None = exc.__cause__ or exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = _short(current)
        if text and (not best or isinstance(current, OSError)):
            best = text
        current = current.__cause__ or current.__context__
    return best or exc.__class__.__name__


def _mean_if_per_token(values: Any) -> list[float]:
    """A pooled vector as is; one vector per token (a server without pooling) averaged."""
    values = list(values)
    if values and isinstance(values[0], (list, tuple)):
        return [sum(column) / len(values) for column in zip(*values)]
    return values


def _usage(resp: Any) -> tuple[int, int]:
    usage = getattr(resp, "usage", None)
    return (getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)


def _server_message(exc: Any) -> str:
    """The server's own words: ``{"error": {"message": ...}}`` (OpenAI), ``{"detail": ...}`` (FastAPI),
    or the raw body."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error") or body
    elif body:
        text = body
    else:
        response = getattr(exc, "response", None)
        text = getattr(response, "reason_phrase", "") or _short(exc)
    return _short(text)


def _short(value: object) -> str:
    return " ".join(str(value).split())[:300]


def _run_sync(coro) -> None:
    """asyncio.run, also from inside a running loop (e.g. a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # pragma: no cover - re-raised below
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
