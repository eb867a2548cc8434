"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, ...) via the official SDK.

Retries with exponential backoff on 408/409/429/5xx, timeouts and connection errors are the SDK's
own (``max_retries``; a server's ``Retry-After``/``retry-after-ms`` header sets the wait when it is
positive); requests run concurrently up to ``max_concurrency``.

Pools (``base_url="URL1,URL2#4,..."``, spec ``openai:MODEL@URL1,URL2#4``): several servers of one
model. ``#N`` is that endpoint's limit of requests in flight (else ``max_concurrency``, which is per
endpoint); each HTTP request goes to the next endpoint in turn that has a free slot and a closed
circuit. In a pool the SDK makes no retries (``max_retries=0`` per attempt): an attempt that fails
with a connection error, a timeout, 408/409/429 or 5xx opens that endpoint's circuit for
``cooldown`` s (doubled per failure in a row, at most ``MAX_COOLDOWN``; after it one probe request
is let through, whose answer closes it) and the request is made again on another endpoint, at most
``max_retries + len(endpoints)`` attempts in all; the fault ``failover`` is counted per such
attempt. A failure of a request sent before the endpoint's last trip is not counted again (the
requests in flight to a dying server all fail at once). When every endpoint has failed
``DOWN_AFTER`` times in a row (fewer if ``max_retries`` is smaller), the batch stops with one line
naming each endpoint and its last error. A call is charged by the evaluator when its answer comes
back, so once, whatever it took. 4xx answers are not failed over: the servers of a pool serve the
same model, so a 400/401/404 would be the same everywhere (a setup error, one line).
Identity: a pool answers as its first endpoint (``openai:FIRST_URL:MODEL``), so ``M@a`` and
``M@a,b,c`` share cached answers; this assumes every endpoint of a pool serves the same weights
(the caller's promise: servers do not report their weights). The identity keeps the URL rather than
the model name alone because names are not unique across servers (llama.cpp's server answers to any
model name).

Modules: this one is the backend (requests, answers, retries of unusable answers, preflight);
``endpoint_pool`` holds the endpoints, their circuit breakers and a batch's scheduling over them;
``openai_transport`` the fault-counting HTTP transport, the event loop and an SDK error in one line.

Decisions:
- Every failure that reaches the caller is one ``PromptgymError`` line naming the endpoint and the
  model, with the HTTP status and the server's own message, plus a hint for the usual causes
  (server not running, wrong key, wrong model name or base URL without ``/v1``).
- Concurrency, retries, timeout and a pool's cooldown are constructor arguments; CLI users (whose
  model spec has room only for per-endpoint limits) set ``PROMPTGYM_OPENAI_CONCURRENCY`` (8, per
  endpoint), ``PROMPTGYM_OPENAI_RETRIES`` (6), ``PROMPTGYM_OPENAI_TIMEOUT`` (120 s) and
  ``PROMPTGYM_OPENAI_COOLDOWN`` (2 s). A refused connection is retried like any transient failure
  (a server may be restarting), so a wrong port fails only after the retries' backoff (~20 s at 6).
- The key goes as the SDK's ``api_key`` (``Authorization: Bearer KEY``), per endpoint: a key written
  into an endpoint's URL (``http://user:KEY@host/v1``, ``http://KEY@host/v1``, ``?api_key=KEY``) is
  taken out of the URL the SDK gets (``split_key``) and wins over ``api_key`` / ``OPENAI_API_KEY``.
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
- Otherwise choice options are scored from the first answer token (``first_token``): one request
  per example with ``max_tokens=1`` and ``logprobs``: ``/chat/completions`` with ``logprobs=true,
  top_logprobs=K`` for chat layouts, ``/completions`` with ``logprobs=K`` (no echo) for raw text.
  K is ``top_logprobs`` (``PROMPTGYM_OPENAI_TOP_LOGPROBS``, default 1000: a small model's option
  words may sit far down the list); a server that refuses it (400/422, or a 5xx twice; OpenAI and
  vLLM allow 20 by default) is asked again with 20 in the same call. Until an endpoint has answered
  a route with alternatives (remembered per endpoint, model and route for the process), a batch's
  first request goes alone: if the endpoint lists none, that call is a failed call (ledger fault
  ``no_logprobs``), the rest is not sent and ``score`` raises ``ScoringUnavailable`` (one line),
  which a run that chose the scoring itself takes as the answer "generate instead". That verdict
  is not remembered, so every run's start asks once and its ledger does not depend on what ran
  before in the process. Options read from one shared first token tie, with one warning line per
  option set. ``supports_scoring`` stays False (the runner asks with a real
  request whether a served model scores a task's options: ``scores_first_token``).
  Echo mode has its own identity (``+echo``): its option scores of a raw-text request differ.
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
  A pool checks its endpoints in parallel and starts if one answers (see ``preflight``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from typing import Any, Sequence

from promptgym.errors import PromptgymError, ScoringUnavailable
from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OnResult,
                                   OptionScores, ScoreRequest)
from promptgym.models.endpoint_pool import COOLDOWN, Endpoint, EndpointPool, parse_endpoints
from promptgym.models.first_token import chat_alternatives, completion_alternatives, read_options
from promptgym.models.openai_transport import FAULTS, note, problem, root_cause, run_sync, server_message
from promptgym.secrets import remember_secret, scrub

EMBED_BATCH = 32
ANSWER_RETRIES = 3  # extra attempts for an answer the SDK accepted but is unusable
PREFLIGHT_TIMEOUT = 5.0
TOP_LOGPROBS = 1000  # alternatives asked for the first answer token (option scoring) ...
COMMON_TOP_LOGPROBS = 20  # ... else this, OpenAI's maximum and vLLM's default one
# The alternatives an endpoint lists for first-token option scoring, per (endpoint, model, route),
# once it has answered with them in this process. (That it lists none is not remembered beyond the
# batch that found out: every run's start then asks once, so its ledger is the same in any process.)
_GRANTED: dict[tuple[str, str, str], int] = {}


class _BadAnswer(Exception):
    """An answer the SDK accepted but that cannot be used; ``kind`` names the fault."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Refused:
    """A server's refusal of a request for log-probabilities (see ``_first_token_call``): its words."""

    def __init__(self, text: str):
        self.text = text


class OpenAIBackend:
    """Chat completions for chat-shaped requests, completions for raw-text requests.

    Options are scored from the first answer token's top log-probabilities (``scores_first_token``),
    or with ``logprob_scoring`` from echoed prompt log-probs (``supports_scoring``: the runner then
    scores choices by log-probability without asking).
    """

    supports_scoring = False
    supports_embedding = True

    def __init__(self, model: str, base_url: str | Sequence[str] | None = None, api_key: str | None = None,
                 max_concurrency: int | None = None, max_retries: int | None = None,
                 timeout: float | None = None, logprob_scoring: bool = False,
                 embedding_model: str | None = None, cooldown: float | None = None,
                 top_logprobs: int | None = None):
        try:
            import openai
        except ImportError:
            raise PromptgymError("the OpenAI-compatible backend needs the SDK: pip install 'promptgym[openai]'") from None
        max_concurrency = _setting(max_concurrency, "PROMPTGYM_OPENAI_CONCURRENCY", 8, int)
        max_retries = _setting(max_retries, "PROMPTGYM_OPENAI_RETRIES", 6, int)
        timeout = _setting(timeout, "PROMPTGYM_OPENAI_TIMEOUT", 120.0, float)
        cooldown = _setting(cooldown, "PROMPTGYM_OPENAI_COOLDOWN", COOLDOWN, float)
        self.top_logprobs = _setting(top_logprobs, "PROMPTGYM_OPENAI_TOP_LOGPROBS", TOP_LOGPROBS, int)
        if self.top_logprobs < 1:
            raise PromptgymError(f"openai backend: top_logprobs must be at least 1 (got {self.top_logprobs})")
        self.embedding_model = _setting(embedding_model, "PROMPTGYM_OPENAI_EMBEDDING_MODEL", model, str)
        if base_url is None or (isinstance(base_url, str) and not base_url.strip()):
            base_url = os.environ.get("OPENAI_BASE_URL") or ""
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        remember_secret(api_key)
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or cooldown <= 0:
            raise PromptgymError(f"openai backend: need max_concurrency >= 1, max_retries >= 0, timeout > 0 and "
                                 f"cooldown > 0 (got {max_concurrency}, {max_retries}, {timeout:g}, {cooldown:g})")
        self.endpoints = parse_endpoints(base_url, max_concurrency)
        if not api_key:
            if self.endpoints[0].url is None:
                raise PromptgymError("openai backend: set OPENAI_API_KEY (or give a base URL of a local server)")
            api_key = "unused"  # local servers usually ignore the key
        for endpoint in self.endpoints:  # a key written into an endpoint's URL is that endpoint's key
            endpoint.api_key = endpoint.api_key or api_key
        first = self.endpoints[0]
        self.model = model
        self.base_url = first.shown if first.url else None  # the key stays in the client's arguments only
        self.endpoint = first.where  # where errors of a single endpoint point
        # The context size is unknown over HTTP: PROMPTGYM_OPENAI_CONTEXT (tokens) sets it for the
        # long-input check; None skips the check.
        self.context_limit = _setting(None, "PROMPTGYM_OPENAI_CONTEXT", None, int)
        self.failover = len(self.endpoints) > 1
        self.max_concurrency = sum(e.limit for e in self.endpoints)  # in flight over the whole pool
        self.max_retries = max_retries
        self.timeout = timeout
        self.cooldown = cooldown
        self.logprob_scoring = logprob_scoring
        self.supports_scoring = logprob_scoring
        self.scores_first_token = not logprob_scoring  # whether it does is known after a first request
        self._warned_shared: set[tuple[str, ...]] = set()
        self._no_scores: dict[tuple[str, str, str], str] = {}  # a batch's pilot: why an endpoint gives none
        # In a pool each attempt goes to one endpoint once (max_retries=0): a retry is a failover,
        # made by the pool; a single endpoint keeps the SDK's own retries and backoff.
        # (Each endpoint's client also gets its URL without the key, the key as the SDK's api_key --
        # sent as "Authorization: Bearer KEY" -- and the URL's other query items as default_query.)
        self._client_args = dict(max_retries=0 if self.failover else max_retries, timeout=timeout)
        self._openai = openai
        self.answer_retries = min(ANSWER_RETRIES, max_retries)
        self.last_faults: dict[str, int] = {}
        self._answered_ok = False  # any well-formed answer yet (see the module docstring)
        # A pool answers as its first endpoint (see "Pools" in the module docstring).
        self.identity = f"openai:{self.base_url or 'api.openai.com'}:{model}"
        if self.embedding_model != model:  # vectors are cached under the identity
            self.identity += f"+embed:{self.embedding_model}"
        if logprob_scoring:  # a raw-text request's option scores differ from first-token scoring's
            self.identity += "+echo"

    # -- generation ------------------------------------------------------------------------------

    async def _one(self, pool: EndpointPool, request: GenerationRequest) -> Completion:
        common: dict[str, Any] = dict(model=self.model, max_tokens=request.max_tokens,
                                      temperature=request.temperature, top_p=request.top_p, seed=_seed(request))
        if request.stop:
            common["stop"] = list(request.stop)[:4]  # the OpenAI API accepts at most four
        if request.messages is not None:
            messages = _chat_messages(request)

            async def attempt() -> Completion:
                resp = await pool.request(lambda c: c.chat.completions.create(messages=messages, **common))
                choice = self._first_choice(resp, "chat/completions")
                return self._completion(resp, getattr(getattr(choice, "message", None), "content", None),
                                        "chat/completions")
        else:
            async def attempt() -> Completion:
                prompt = (request.text or "") + request.answer_prefix
                resp = await pool.request(lambda c: c.completions.create(prompt=prompt, **common))
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
                note("truncated")
                problem = _BadAnswer("truncated", f"{self._where()}: the server's JSON answer was cut short")
            except _BadAnswer as exc:
                note(exc.kind)
                problem = exc
            else:
                self._answered_ok = True
                return result
        if not self._answered_ok:
            raise PromptgymError(str(problem))
        note("failed")
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

    async def _score_one(self, pool: EndpointPool, request: ScoreRequest) -> OptionScores:
        if request.messages is not None:
            raise PromptgymError(f"{self._where()}: log-probability scoring over /completions needs a raw-text "
                                 "layout (--layout plain): a remote server's chat template is unknown")
        context = (request.text or "") + request.answer_prefix

        async def option(continuation: str) -> tuple[float, int, int]:
            async def attempt() -> tuple[float, int, int]:
                resp = await pool.request(lambda c: c.completions.create(
                    model=self.model, prompt=context + continuation, max_tokens=1, temperature=0.0, echo=True,
                    logprobs=1))
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
        if self.logprob_scoring:
            self._call(self._score_one, requests, on_result)
            return
        # A route the endpoint has not answered with alternatives yet is tried with one request
        # alone: it finds out how many the endpoint lists, or that it lists none (then the rest of
        # the batch is not sent).
        pilots = list({_route(r): i for i, r in reversed(list(enumerate(requests)))
                       if self._grant_key(r) not in _GRANTED}.values())
        for i in pilots:
            self._call(self._score_first_token, [requests[i]], lambda _, result, i=i: on_result(i, result))
            key = self._grant_key(requests[i])
            if key not in _GRANTED:
                reason = self._no_scores.pop(key, f"/{key[2]} gave no usable log-probabilities")
                raise ScoringUnavailable(scrub(f"{self._where()}: {reason}"))
        rest = [i for i in range(len(requests)) if i not in pilots]
        self._call(self._score_first_token, [requests[i] for i in rest], lambda j, result: on_result(rest[j], result))

    # -- option scoring from the first answer token's top log-probabilities (``first_token``) ---------

    def _grant_key(self, request: ScoreRequest) -> tuple[str, str, str]:
        return self.endpoints[0].where, self.model, _route(request)

    async def _score_first_token(self, pool: EndpointPool, request: ScoreRequest) -> OptionScores:
        """One request for the first answer token's alternatives, read into option scores. The
        endpoint's first answer of a route settles ``_GRANTED`` (``_first_answer``); if it gives no
        log-probabilities, the call is a failed call and ``score`` stops. Later answers without
        them are faults, retried."""
        key, route, count = self._grant_key(request), _route(request), len(request.continuations)

        async def attempt() -> OptionScores | None:
            granted = _GRANTED.get(key)
            answered = await self._first_answer(pool, request, granted)
            if answered is None:
                return None
            resp, top = answered
            alternatives = _ALTERNATIVES[route](resp)
            if alternatives is None and granted is None:
                self._no_scores[key] = f"/{route} returns no log-probabilities of the answer's tokens"
                return None
            if alternatives is None:
                raise _BadAnswer("no_logprobs", f"{self._where()}: /{route} returned no log-probabilities of "
                                                "the answer's first token (use --scoring generate)")
            _GRANTED[key] = top
            reading = read_options(alternatives, request.continuations)
            self._warn_shared(reading.shared, request.continuations)
            return OptionScores(reading.logprobs, tuple(1 if tokens else 0 for tokens in reading.tokens),
                                prompt_tokens=_usage(resp)[0])

        failed = OptionScores((0.0,) * count, (0,) * count)  # no option read
        scores = await self._retry_bad(attempt, failed)
        if scores is None:  # the endpoint gives no log-probabilities: recorded as a failed call
            note("no_logprobs")
            note("failed")
            return failed
        return scores

    async def _first_answer(self, pool: EndpointPool, request: ScoreRequest,
                            granted: int | None) -> tuple[Any, int] | None:
        """The answer to ``request`` and the alternatives asked: ``granted``, or the endpoint's
        first time (``granted`` None) ``top_logprobs``, then ``COMMON_TOP_LOGPROBS`` if that was
        refused; None when both were refused (why, in ``_no_scores``)."""
        key, route = self._grant_key(request), _route(request)
        asks = [granted] if granted else sorted({self.top_logprobs, min(self.top_logprobs, COMMON_TOP_LOGPROBS)},
                                                reverse=True)
        for top in asks:
            resp = await pool.request(lambda c: self._first_token_call(c, request, top, granted is None))
            if not isinstance(resp, _Refused):
                self._first_choice(resp, route)
                return resp, top
            self._no_scores[key] = f"/{route} refuses log-probabilities (top_logprobs={top}: {resp.text})"
        return None

    async def _first_token_call(self, client: Any, request: ScoreRequest, top: int, asking: bool) -> Any:
        """The request for the first answer token and its ``top`` alternatives. ``asking`` (the
        endpoint's first answer): a refusal -- a 400 or 422, or a 5xx a retry did not cure
        (llama-cpp-python's server without ``logits_all`` answers 500; a pool fails a 5xx over
        instead) -- comes back as a ``_Refused``, not as the one-line error that ends the run."""
        common: dict[str, Any] = dict(model=self.model, max_tokens=1, temperature=0.0, seed=_seed(request))
        if asking:
            client = client.with_options(max_retries=min(self.max_retries, 1))
        try:
            if request.messages is not None:
                return await client.chat.completions.create(messages=_chat_messages(request), logprobs=True,
                                                            top_logprobs=top, **common)
            return await client.completions.create(prompt=(request.text or "") + request.answer_prefix,
                                                   logprobs=top, **common)
        except self._openai.APIStatusError as exc:
            status = exc.status_code
            if asking and (status in (400, 422) or (status >= 500 and not self.failover)):
                return _Refused(f"HTTP {status}: {server_message(exc)}")
            raise

    def _warn_shared(self, shared: tuple[tuple[int, ...], ...], continuations: Sequence[str]) -> None:
        """One stderr line per option set whose options share a first token (they tie)."""
        if not shared or tuple(continuations) in self._warned_shared:
            return
        self._warned_shared.add(tuple(continuations))
        groups = "; ".join(" and ".join(repr(continuations[i].strip()) for i in group) for group in shared)
        print(f"promptgym: warning: {self._where()}: options {groups} begin with the same token, so the first "
              "answer token cannot tell them apart and they tie (use --scoring generate)", file=sys.stderr, flush=True)

    # -- embeddings over /v1/embeddings ---------------------------------------------------------

    async def _embed_batch(self, pool: EndpointPool, texts: list[str]) -> list[Embedding]:
        resp = await pool.request(lambda c: c.embeddings.create(model=self.embedding_model, input=texts,
                                                                encoding_format="float"), self.embedding_model)
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

    def _call(self, one, requests: Sequence, on_result: OnResult, model: str | None = None) -> None:
        try:
            run_sync(self._run(one, requests, on_result))
        except self._openai.OpenAIError as exc:
            raise PromptgymError(scrub(self.describe(exc, model))) from None

    async def _run(self, one, requests: Sequence, on_result: OnResult) -> None:
        async with EndpointPool(self) as pool:
            async def worker(i: int, request) -> None:
                faults: dict[str, int] = {}
                FAULTS.set(faults)  # this task's own context (scoring's option tasks share the dict)
                result = await one(pool, request)  # the pool bounds the requests in flight per endpoint
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

    def preflight(self) -> str | None:
        """Fail in seconds, with one line, if nothing answers (see the docstring). A pool starts
        when at least one endpoint answers: the others start with an open circuit (tried again
        after the cooldown) and are named in the one-line warning returned, which the caller
        prints on stderr (once, if the task and optimizer models are the same pool)."""
        if not self.failover:
            problem = self._preflight_one(self.endpoints[0])
            if problem is not None:
                raise PromptgymError(scrub(problem))
            return None
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(self.endpoints), 8)) as threads:
            problems = list(threads.map(self._preflight_one, self.endpoints))
        failed = [(e, p) for e, p in zip(self.endpoints, problems) if p is not None]
        if not failed:
            return None
        listed = "; ".join(f"{e.shown}: {p.split(': ', 1)[-1]}" for e, p in failed)
        if len(failed) == len(self.endpoints):
            raise PromptgymError(scrub(f"{self._where()}: no endpoint answers at run start: {listed}"))
        now = time.monotonic()
        for endpoint, problem in failed:
            endpoint.trip(now, self.cooldown, problem.split(": ", 1)[-1])
        return scrub(f"{self._where()}: {len(failed)} of {len(self.endpoints)} endpoints do not answer at run "
                     f"start, starting without them (tried again after {self.cooldown:g}s, then less often): {listed}")

    def _preflight_one(self, endpoint: Endpoint) -> str | None:
        """``GET /models`` at one endpoint: None if something answered, else the one-line problem."""
        openai = self._openai
        timeout = min(self.timeout, PREFLIGHT_TIMEOUT)
        args = dict(self._client_args, **endpoint.client_args(), max_retries=0, timeout=timeout)
        where = self._where(endpoint=endpoint)
        for tries in (1, 2):  # a refused or reset connection is tried once more; a silent server is not
            try:
                with openai.OpenAI(**args) as client:
                    client.models.list()
                return None
            except openai.APITimeoutError:
                return f"{where}: no answer to GET /models within {timeout:g}s at run start; is the server up (and not stuck)?"
            except openai.APIConnectionError as exc:
                if tries == 2 or self.max_retries == 0:
                    return (f"{where}: cannot connect at run start ({root_cause(exc)}); "
                            "is the server running at that address?")
                time.sleep(0.5)
            except openai.APIStatusError as exc:
                if exc.status_code in (401, 403):
                    return self.describe(exc, endpoint=endpoint)
                return None
            except (ValueError, openai.OpenAIError):
                return None  # something answered: alive
        return None  # pragma: no cover - the loop always returns

    def _where(self, model: str | None = None, endpoint: Endpoint | None = None) -> str:
        if endpoint is None and self.failover:
            return f"openai pool of {len(self.endpoints)} endpoints (model '{model or self.model}')"
        return f"openai endpoint {(endpoint or self.endpoints[0]).where} (model '{model or self.model}')"

    def describe(self, exc: Exception, model: str | None = None, endpoint: Endpoint | None = None) -> str:
        """One line for an SDK error: where (``model``: the one asked, if not the generation
        model; ``endpoint``: the pool's endpoint that failed), what the server said, and the likely fix."""
        return f"{self._where(model, endpoint)}: {self._problem(exc)}"

    def _problem(self, exc: Exception) -> str:
        """What went wrong, without where. The retries are named only where the SDK made them
        (a single endpoint): in a pool a retry is a failover to another endpoint."""
        return problem(self._openai, exc, self.timeout, "" if self.failover else f" after {self.max_retries} retries")


def _route(request: ScoreRequest) -> str:
    return "chat/completions" if request.messages is not None else "completions"


_ALTERNATIVES = {"chat/completions": chat_alternatives, "completions": completion_alternatives}


def _seed(request: GenerationRequest | ScoreRequest) -> int:
    """Derived from the whole request: the same request always sends the same seed."""
    return int(hashlib.sha256(repr(request).encode()).hexdigest()[:8], 16)


def _chat_messages(request: GenerationRequest | ScoreRequest) -> list[dict[str, str]]:
    """The request's chat messages; the answer cue goes at the end of the last (user) turn, as there
    is no portable way to prefill the assistant's."""
    messages = [{"role": r, "content": c} for r, c in request.messages or ()]
    if request.answer_prefix:
        messages[-1]["content"] += "\n" + request.answer_prefix
    return messages


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


def _mean_if_per_token(values: Any) -> list[float]:
    """A pooled vector as is; one vector per token (a server without pooling) averaged."""
    values = list(values)
    if values and isinstance(values[0], (list, tuple)):
        return [sum(column) / len(values) for column in zip(*values)]
    return values


def _usage(resp: Any) -> tuple[int, int]:
    usage = getattr(resp, "usage", None)
    return (getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)
