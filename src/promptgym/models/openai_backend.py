"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, ...) via the official SDK.

Retries with exponential backoff on 408/409/429/5xx, timeouts and connection errors are the SDK's
own (``max_retries``); requests run concurrently up to ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from typing import Sequence

from promptgym.errors import PromptgymError
from promptgym.models.base import Completion, GenerationRequest, OnResult, ScoreRequest


class OpenAIBackend:
    """Chat completions for chat-shaped requests, completions for raw-text requests.

    Log-probability scoring is not offered (few chat APIs return prompt log-probs): choice tasks on
    this backend generate an answer and match it to an option instead.
    """

    supports_scoring = False

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 max_concurrency: int = 8, max_retries: int = 6, timeout: float = 120.0):
        try:
            import openai
        except ImportError:
            raise PromptgymError("the OpenAI-compatible backend needs the SDK: pip install 'promptgym[openai]'") from None
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if not base_url:
                raise PromptgymError("openai backend: set OPENAI_API_KEY (or give a base URL of a local server)")
            api_key = "unused"  # local servers usually ignore the key
        self.model = model
        self.base_url = base_url
        self.max_concurrency = max_concurrency
        self._client_args = dict(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout)
        self._openai = openai
        self.identity = f"openai:{base_url or 'api.openai.com'}:{model}"

    async def _one(self, client, request: GenerationRequest) -> Completion:
        seed = int(hashlib.sha256(repr(request).encode()).hexdigest()[:8], 16)
        common = dict(model=self.model, max_tokens=request.max_tokens, temperature=request.temperature,
                      top_p=request.top_p, seed=seed)
        if request.stop:
            common["stop"] = list(request.stop)[:4]
        if request.messages is not None:
            messages = [{"role": r, "content": c} for r, c in request.messages]
            if request.answer_prefix:  # no portable assistant prefill: cue the answer in the user turn
                messages[-1]["content"] += "\n" + request.answer_prefix
            resp = await client.chat.completions.create(messages=messages, **common)
            text = resp.choices[0].message.content or ""
        else:
            resp = await client.completions.create(prompt=(request.text or "") + request.answer_prefix, **common)
            text = resp.choices[0].text or ""
        usage = resp.usage
        return Completion(text=text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0)

    async def _run(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        semaphore = asyncio.Semaphore(self.max_concurrency)
        async with self._openai.AsyncOpenAI(**self._client_args) as client:
            async def worker(i: int, request: GenerationRequest) -> None:
                async with semaphore:
                    result = await self._one(client, request)
                on_result(i, result)  # same thread as the caller's event loop: safe to persist

            tasks = [asyncio.create_task(worker(i, r)) for i, r in enumerate(requests)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        try:
            _run_sync(self._run(requests, on_result))
        except self._openai.APIError as exc:
            raise PromptgymError(f"{self.identity}: {exc.__class__.__name__}: {_short(exc)}") from None

    def score(self, requests: Sequence[ScoreRequest], on_result: OnResult) -> None:
        raise PromptgymError(f"{self.identity}: log-probability scoring is not supported; use --scoring generate")

    def close(self) -> None:
        pass


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


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
