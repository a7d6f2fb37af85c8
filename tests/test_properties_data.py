"""Property-based tests of the data layer: ``Vocabulary`` round trips, ``ItemList.top`` and the splits
(leave-one-out, temporal, cold items) over small random datasets."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.splits import Split, cold_start_items, leave_one_out, temporal_cutoff
from recllm.data.vocabulary import Vocabulary
from recllm.errors import DataError, UnknownIdError
from recllm.testing.strategies import datasets

FAST = settings(max_examples=100, deadline=None)

ids = st.text(alphabet="abcxyz019-_", min_size=1, max_size=6)


# ---- Vocabulary -------------------------------------------------------------------------------------------
@FAST
@given(st.lists(ids, unique=True, max_size=20))
def test_vocabulary_maps_ids_and_indices_both_ways(values: list[str]) -> None:
    vocab = Vocabulary(values, kind="item")
    assert len(vocab) == len(values) and vocab.ids == tuple(values) and list(vocab) == values
    for position, ext in enumerate(values):
        assert vocab.index(ext) == position and vocab.id(position) == ext and ext in vocab
    indices = vocab.indices(values)
    assert indices.tolist() == list(range(len(values)))
    assert vocab.lookup_ids(indices) == values
    assert Vocabulary(values) == vocab and hash(Vocabulary(values)) == hash(vocab)


@FAST
@given(st.lists(st.integers(0, 10_000), unique=True, min_size=1, max_size=20))
def test_integer_ids_name_the_same_entries_as_their_strings(values: list[int]) -> None:
    vocab = Vocabulary(values)
    assert vocab.ids == tuple(str(v) for v in values)
    assert all(vocab.index(v) == vocab.index(str(v)) for v in values)


@FAST
@given(st.lists(ids, unique=True, min_size=1, max_size=12), st.lists(ids, min_size=1, max_size=12))
def test_unknown_ids_raise_are_marked_or_skipped_as_asked(known: list[str], asked: list[str]) -> None:
    vocab = Vocabulary(known, kind="user")
    expected = [known.index(a) if a in known else -1 for a in asked]
    assert vocab.indices(asked, missing="mark").tolist() == expected
    assert vocab.indices(asked, missing="skip").tolist() == [e for e in expected if e >= 0]
    assert [vocab.get(a) for a in asked] == expected
    unknown = [a for a in asked if a not in known]
    if unknown:
        with pytest.raises(UnknownIdError, match=f"unknown user id '{unknown[0]}'"):
            vocab.indices(asked)
        with pytest.raises(KeyError):  # UnknownIdError is a KeyError too
            vocab.index(unknown[0])
    else:
        assert vocab.indices(asked).tolist() == expected


@FAST
@given(st.lists(ids, min_size=2, max_size=10).filter(lambda v: len(set(v)) < len(v)))
def test_a_repeated_id_is_a_data_error(values: list[str]) -> None:
    with pytest.raises(DataError, match="duplicate"):
        Vocabulary(values)


# ---- ItemList ---------------------------------------------------------------------------------------------
@st.composite
def item_lists(draw: st.DrawFn) -> ItemList:
    items = draw(st.lists(ids, unique=True, max_size=12))
    scores = draw(st.lists(st.floats(-1e6, 1e6), min_size=len(items), max_size=len(items)))
    explained = draw(st.booleans())
    explanations = tuple(f"because {i}" for i in items) if explained else None
    return ItemList(tuple(items), np.asarray(scores), explanations)


@FAST
@given(item_lists(), st.integers(0, 15), st.integers(0, 15))
def test_top_k_keeps_the_order_and_is_a_prefix(items: ItemList, k: int, j: int) -> None:
    top = items.top(k)
    n = min(k, len(items))
    assert len(top) == n
    assert top.items == items.items[:n]
    np.testing.assert_array_equal(top.scores, items.scores[:n])
    if items.explanations is not None:
        assert top.explanations == items.explanations[:n]
    assert top.top(j) == items.top(min(j, k))
    assert items.top(len(items)) == items


@FAST
@given(item_lists())
def test_item_lists_round_trip_through_pairs_and_records(items: ItemList) -> None:
    pairs = [(s.item, s.score) for s in items]
    assert ItemList.from_pairs(pairs).items == items.items
    np.testing.assert_array_equal(ItemList.from_pairs(pairs).scores, items.scores)
    records = items.to_records()
    assert [r["item"] for r in records] == list(items.items)
    assert all(("explanation" in r) == (items.explanations is not None) for r in records)


@FAST
@given(st.lists(ids, min_size=2, max_size=8).filter(lambda v: len(set(v)) < len(v)))
def test_an_item_list_refuses_duplicates(values: list[str]) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ItemList(tuple(values), np.zeros(len(values)))


# ---- splits -----------------------------------------------------------------------------------------------
def rows(dataset: Dataset) -> Counter[tuple[str, str, int]]:
    """The interactions as a multiset of (user, item, timestamp)."""
    assert dataset.timestamps is not None
    users = dataset.user_vocab.lookup_ids(dataset.users)
    items = dataset.item_vocab.lookup_ids(dataset.items)
    return Counter(zip(users, items, dataset.timestamps.tolist(), strict=True))


def assert_partition(split: Split, dataset: Dataset) -> None:
    """Nothing lost, nothing added, vocabularies shared."""
    assert len(split.train) + len(split.valid) + len(split.test) == len(dataset)
    assert rows(split.train) + rows(split.valid) + rows(split.test) == rows(dataset)
    for part in (split.train, split.valid, split.test):
        assert part.user_vocab == dataset.user_vocab and part.item_vocab == dataset.item_vocab


@FAST
@given(datasets())
def test_leave_one_out_holds_out_each_users_last_interactions_in_time_order(dataset: Dataset) -> None:
    split = leave_one_out(dataset)
    assert_partition(split, dataset)
    assert len(split.test_history()) == len(split.train) + len(split.valid)
    for user in range(dataset.n_users):
        sequence = dataset.sequence(user).tolist()
        test, valid, train = (part.sequence(user).tolist() for part in (split.test, split.valid, split.train))
        n = len(sequence)
        assert test == (sequence[-1:] if n >= 2 else [])
        assert valid == (sequence[-2:-1] if n >= 3 else [])
        assert train == sequence[:n - len(test) - len(valid)]  # the time order of the rest is kept
        stamps = {name: part.timestamps[part.users == user]
                  for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test))}
        earlier = np.concatenate([stamps["train"], stamps["valid"]])
        if len(stamps["test"]) and len(earlier):
            assert earlier.max() <= stamps["test"].min()
        if len(stamps["valid"]) and len(stamps["train"]):
            assert stamps["train"].max() <= stamps["valid"].min()


@FAST
@given(datasets(distinct_items=True))
def test_leave_one_out_never_shows_a_test_item_in_its_users_training_part(dataset: Dataset) -> None:
    split = leave_one_out(dataset)
    for user in range(dataset.n_users):
        seen = set(split.train.sequence(user).tolist()) | set(split.valid.sequence(user).tolist())
        assert not seen & set(split.test.sequence(user).tolist())


@FAST
@given(datasets(max_timestamp=20), st.floats(0.05, 0.5), st.floats(0.0, 0.4))
def test_temporal_cutoff_puts_every_train_interaction_before_validation_and_test(
        dataset: Dataset, test_fraction: float, valid_fraction: float) -> None:
    assume(test_fraction + valid_fraction < 1)
    try:
        split = temporal_cutoff(dataset, test_fraction=test_fraction, valid_fraction=valid_fraction)
    except DataError as exc:  # documented: a cut that leaves train or test empty is refused
        assert "empty" in str(exc)
        return
    assert_partition(split, dataset)
    assert len(split.train) and len(split.test)
    assert split.train.timestamps.max() < split.test.timestamps.min()
    if len(split.valid):
        assert split.train.timestamps.max() < split.valid.timestamps.min()
        assert split.valid.timestamps.max() < split.test.timestamps.min()


@FAST
@given(datasets(max_items=10), st.floats(0.1, 0.9), st.integers(0, 3))
def test_cold_items_never_appear_in_training(dataset: Dataset, fraction: float, seed: int) -> None:
    split = cold_start_items(dataset, fraction=fraction, seed=seed)
    assert_partition(split, dataset)
    train_items = set(split.train.items.tolist())
    valid_items, test_items = set(split.valid.items.tolist()), set(split.test.items.tolist())
    assert not train_items & (valid_items | test_items)
    assert not valid_items & test_items
