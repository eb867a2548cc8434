"""Gymnasium environments for reinforcement-learning agents that write prompts.

``import promptgym.envs`` registers ``promptgym/PromptEdit-v0`` (``PromptEditEnv``): an agent edits a
prompt (instruction phrases, demonstrations, label words, layout) TEMPERA-style and is rewarded by the
task metric through promptgym's Evaluator (response cache, hard budget). See ``prompt_edit``.

gymnasium is an optional dependency (``pip install 'promptgym[envs]'``; with stable-baselines3:
``promptgym[rl]``). ``import promptgym`` and every optimizer work without it.
"""

from __future__ import annotations

try:
    import gymnasium
except ImportError:  # one clear line instead of a traceback into gymnasium's absence
    raise ImportError("promptgym.envs needs gymnasium: pip install 'promptgym[envs]'") from None

from promptgym.envs.prompt_edit import PromptEditEnv

ENV_ID = "promptgym/PromptEdit-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="promptgym.envs.prompt_edit:PromptEditEnv")

__all__ = ["ENV_ID", "PromptEditEnv"]
