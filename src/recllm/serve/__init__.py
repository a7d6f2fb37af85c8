"""The service: storage (SQLAlchemy; SQLite by default, PostgreSQL by URL)."""

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

__all__ = [
    "FEEDBACK_KINDS",
    "SCHEMA_VERSION",
    "ChatSessionRecord",
    "ChatTurn",
    "FeedbackRecord",
    "StorageError",
    "Store",
    "default_url",
]
