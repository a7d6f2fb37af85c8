import numpy as np
import pytest

from recllm.data import Dataset, Vocabulary
from recllm.errors import DataError, UnknownIdError


def test_vocabulary_round_trip_and_int_ids():
    vocab = Vocabulary([10, "x", 3], kind="user")
    assert vocab.ids == ("10", "x", "3")
    assert vocab.index(10) == 0 and vocab.index("10") == 0
    assert vocab.lookup_ids(vocab.indices(["3", "x"])) == ["3", "x"]
    assert vocab.indices(["x", "nope"], missing="mark").tolist() == [1, -1]
    assert vocab.indices(["x", "nope"], missing="skip").tolist() == [1]


def test_vocabulary_errors_name_the_id():
    with pytest.raises(UnknownIdError, match="unknown user id 'zz'"):
        Vocabulary(["a"], kind="user").index("zz")
    with pytest.raises(DataError, match="duplicate item id 'a'"):
        Vocabulary(["a", "b", "a"], kind="item")


def test_sequences_are_time_ordered_with_stable_ties(tiny: Dataset):
    ids = tiny.item_vocab.lookup_ids
    assert ids(tiny.sequence(tiny.user_vocab.index("u1"))) == ["a", "b", "c", "d"]
    # u3's first three share timestamp 50: file order c, a, f is kept
    assert ids(tiny.sequence(tiny.user_vocab.index("u3"))) == ["c", "a", "f", "b"]


def test_matrix_popularity_and_take(tiny: Dataset):
    assert tiny.matrix.shape == (4, 6)
    assert tiny.matrix.sum() == 12
    pop = dict(zip(tiny.item_vocab.ids, tiny.item_popularity.tolist(), strict=True))
    assert pop == {"a": 3, "b": 3, "c": 2, "d": 2, "e": 1, "f": 1}
    sub = tiny.take(np.array([0, 1]))
    assert len(sub) == 2 and sub.item_vocab is tiny.item_vocab and sub.n_items == 6
    frame = tiny.to_frame()
    assert list(frame.columns) == ["user", "item", "rating", "timestamp"]
    assert frame.iloc[7].tolist() == ["u3", "c", 1.0, 50]


def test_dataset_arrays_are_read_only(tiny: Dataset):
    with pytest.raises(ValueError):
        tiny.items[0] = 3


def test_dataset_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="ratings has 1 rows but users has 2"):
        Dataset.from_ids(["a", "b"], ["x", "y"], ratings=[1.0])
