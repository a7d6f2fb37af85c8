"""Storage on SQLite and PostgreSQL: schema creation and versioning, feedback, chat sessions, the LLM
response cache, and nothing acknowledged lost when the store is closed and opened again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from recllm.errors import ConfigError
from recllm.llm.cache import CachedLLM
from recllm.serve import SCHEMA_VERSION, StorageError, Store


def test_schema_is_created_and_versioned(store_url: str):
    with Store(store_url) as store:
        assert store.version == SCHEMA_VERSION
    engine = create_engine(store_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version FROM schema_version")).scalar() == SCHEMA_VERSION
        connection.execute(text("UPDATE schema_version SET version = 99"))
        connection.commit()
    engine.dispose()
    with pytest.raises(StorageError, match="schema version 99, newer than this recllm knows"):
        Store(store_url)


def test_feedback_is_kept_across_a_restart(store_url: str):
    with Store(store_url) as store:
        store.add_feedback("196", "242", "like")
        store.add_feedback("196", "302", "rating", 4.5)
        store.add_feedback("new-user", "50", "watched")
    with Store(store_url) as store:
        events = store.feedback("196")
        assert [(e.item, e.kind, e.rating) for e in events] == [("242", "like", None), ("302", "rating", 4.5)]
        assert events[0].created_at.tzinfo is not None and events[0].id < events[1].id
        assert store.users() == ["196", "new-user"]
        assert len(store.feedback()) == 3


@pytest.mark.parametrize(("kind", "rating", "message"), [
    ("love", None, "feedback kind must be one of like, dislike, watched, rating"),
    ("rating", None, "a rating is given with kind 'rating' and only then"),
    ("like", 5.0, "a rating is given with kind 'rating' and only then"),
])
def test_bad_feedback_is_refused_and_nothing_is_written(store_url: str, kind: str, rating: float | None,
                                                        message: str):
    with Store(store_url) as store:
        with pytest.raises(StorageError, match=message):
            store.add_feedback("196", "242", kind, rating)
        with pytest.raises(StorageError, match="1 to 200 characters"):
            store.add_feedback("", "242", "like")
        assert store.feedback() == [] and store.users() == []


def test_chat_sessions_keep_their_turns_and_state(store_url: str):
    with Store(store_url) as store:
        sid = store.create_session("196")
        anonymous = store.create_session()
        store.add_turn(sid, "user", "I loved Heat")
        store.add_turn(sid, "assistant", "Try Ronin", {"items": ["1"]}, state={"liked": ["Heat"]})
        with pytest.raises(StorageError, match="no chat session 'nope'"):
            store.add_turn("nope", "user", "hello")
        with pytest.raises(StorageError, match="turn role must be one of user, assistant"):
            store.add_turn(sid, "system", "hello")
    with Store(store_url) as store:
        chat = store.session(sid)
        assert chat.user == "196" and chat.state == {"liked": ["Heat"]}
        assert [(t.position, t.role, t.text, t.payload) for t in chat.turns] == [
            (0, "user", "I loved Heat", {}), (1, "assistant", "Try Ronin", {"items": ["1"]})]
        assert chat.updated_at >= chat.created_at
        assert store.session(anonymous).user is None and store.session(anonymous).turns == ()
        assert store.sessions("196") == [sid] and set(store.sessions()) == {sid, anonymous}
        with pytest.raises(StorageError, match="no chat session"):
            store.session("missing")


def test_store_serves_as_the_llm_response_cache(store_url: str, llm):
    with Store(store_url) as store:
        cached = CachedLLM(llm, store)
        first = cached.logprobs("Favourite film:", [" Heat", " Toy Story"])
        assert cached.stats() == {"hits": 0, "misses": 1} and store.cache_size() == 1  # one entry per call
    with Store(store_url) as store:
        again = CachedLLM(llm, store)
        np.testing.assert_array_equal(again.logprobs("Favourite film:", [" Heat", " Toy Story"]), first)
        assert again.stats() == {"hits": 1, "misses": 0}
        assert ("service.sqlite" if store.dialect == "sqlite" else "postgresql") in repr(again)
        store.put_many([("k", "b", "m", "x", [1, 2]), ("k", "b", "m", "x", [3])])  # the first value stays
        assert store.get("k") == [1, 2] and store.get_many([]) == {}


def test_sqlite_uses_wal_and_bad_urls_are_named(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'db.sqlite'}"
    with Store(url) as store, store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    with pytest.raises(ConfigError, match="database URL nosuchdb://x"):
        Store("nosuchdb://x")
    with pytest.raises(StorageError, match="cannot open database"):
        Store("postgresql://nobody:secret@127.0.0.1:1/none")


def test_passwords_never_appear_in_messages():
    with pytest.raises(StorageError) as caught:
        Store("postgresql://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
