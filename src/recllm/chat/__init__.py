"""Conversation and decision support: the chat agent with its preference state and extractors, and the
per-aspect match of an item for a user."""

from recllm.chat.agent import ChatAgent, ChatItem, ChatRecommender, ChatReply
from recllm.chat.aspects import Aspect, AspectAnalyzer, DecisionReport
from recllm.chat.extract import LLMExtractor, RuleExtractor
from recllm.chat.state import Preferences, PreferenceUpdate
from recllm.chat.wishes import WishMatcher

__all__ = [
    "Aspect",
    "AspectAnalyzer",
    "ChatAgent",
    "ChatItem",
    "ChatRecommender",
    "ChatReply",
    "DecisionReport",
    "LLMExtractor",
    "PreferenceUpdate",
    "Preferences",
    "RuleExtractor",
    "WishMatcher",
]
