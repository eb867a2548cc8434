"""DP2O fixtures: the scripted world lives in dp2o_world.py (importable by name)."""

from dp2o_world import world  # noqa: F401
