"""The service: the HTTP app (``create_app``), what it does without HTTP (``Service``, ``ServiceConfig``) and
its storage (SQLAlchemy; SQLite by default, PostgreSQL by URL). The app and the service load on first use."""

from __future__ import annotations

import importlib
from typing import Any

from recllm.serve.storage import (
    FEEDBACK_KINDS,
    SCHEMA_VERSION,
    ChatSessionRecord,
    ChatTurn,
    FeedbackRecord,
    StorageError,
    Store,
    default_url,
)

_LAZY = {"create_app": "recllm.serve.app", "Service": "recllm.serve.service",
         "ServiceConfig": "recllm.serve.service"}

__all__ = [
    "FEEDBACK_KINDS",
    "SCHEMA_VERSION",
    "ChatSessionRecord",
    "ChatTurn",
    "FeedbackRecord",
    "Service",
    "ServiceConfig",
    "StorageError",
    "Store",
    "create_app",
    "default_url",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'recllm.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
