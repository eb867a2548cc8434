"""Model specs on the command line: ``embedded``, ``gguf:PATH``, ``openai:MODEL[@BASE_URL]``
(and ``scripted``, the deterministic test stand-in)."""

from __future__ import annotations

from promptgym.errors import PromptgymError
from promptgym.models.base import Backend

_EMBEDDED: dict[str, Backend] = {}


def make_backend(spec: str) -> Backend:
    """One in-process llama.cpp model per file, shared by the task and optimizer roles."""
    spec = spec.strip()
    if spec in ("embedded", "smollm2", "") or spec.startswith("gguf:"):
        from promptgym.models.llama_cpp_backend import LlamaCppBackend

        path = spec[5:] if spec.startswith("gguf:") else ""
        if path not in _EMBEDDED:
            _EMBEDDED[path] = LlamaCppBackend(model_path=path or None)
        return _EMBEDDED[path]
    if spec == "scripted":  # deterministic stand-in for unit tests of optimizer logic only
        from promptgym.models.scripted import ScriptedBackend

        return ScriptedBackend()
    if spec.startswith("openai:"):
        from promptgym.models.openai_backend import OpenAIBackend

        model, _, base_url = spec[len("openai:"):].partition("@")
        if not model:
            raise PromptgymError(f"model spec '{spec}': name the model, e.g. openai:gpt-4o-mini")
        return OpenAIBackend(model=model, base_url=base_url or None)
    raise PromptgymError(f"unknown model spec '{spec}' (use embedded, gguf:PATH or openai:MODEL[@BASE_URL])")
