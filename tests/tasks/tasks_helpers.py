"""Shared helpers for the LLM task tests: a tiny catalog of well-known movies and a scripted fake model."""

from __future__ import annotations

from fakes import MOVIES as ALL_MOVIES
from fakes import ScriptedLLM

__all__ = ["MOVIES", "SCIFI", "ScriptedLLM"]

_TASK_MOVIES = {"sw", "esb", "rotj", "toy", "titanic", "godfather", "matrix", "lion", "alien", "aliens",
                "terminator", "casablanca", "raiders", "pulp", "aladdin"}
MOVIES = [movie for movie in ALL_MOVIES if movie[0] in _TASK_MOVIES]
SCIFI = ["sw", "esb", "rotj", "alien", "terminator"]
