"""Conversation and decision support: per-aspect match of an item for a user."""

from recllm.chat.aspects import Aspect, AspectAnalyzer, DecisionReport

__all__ = ["Aspect", "AspectAnalyzer", "DecisionReport"]
