"""Train/validation/test splits that are exact and portable (stable time order, exportable files)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recllm.data.dataset import Dataset
from recllm.data.tables import read_table
from recllm.data.validation import InteractionColumns, build_dataset
from recllm.data.vocabulary import Vocabulary
from recllm.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Three datasets over the same vocabularies; ``valid`` may be empty for splits that lack one."""

    kind: str
    train: Dataset
    valid: Dataset
    test: Dataset

    def test_history(self) -> Dataset:
        """Everything a model may see before the test items: train plus validation interactions."""
        return Dataset(
            users=np.concatenate([self.train.users, self.valid.users]),
            items=np.concatenate([self.train.items, self.valid.items]),
            user_vocab=self.train.user_vocab, item_vocab=self.train.item_vocab,
            ratings=_concat_optional(self.train.ratings, self.valid.ratings),
            timestamps=_concat_optional(self.train.timestamps, self.valid.timestamps),
            user_attributes=self.train.user_attributes, name=self.train.name,
        )

    def summary(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                "test_users": len(np.unique(self.test.users))}


def _concat_optional(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def leave_one_out(dataset: Dataset) -> Split:
    """Per user, by time: last interaction -> test, second-last -> validation, the rest -> train.

    Equal timestamps keep file order (stable sort). Users with two interactions give train + test; users
    with one stay in train only (both counted in the log).
    """
    if dataset.timestamps is None:
        log.warning("%s has no timestamps: leave-one-out uses file order", dataset.name)
    order = dataset.time_order
    indptr = dataset.sequence_indptr
    lengths = np.diff(indptr)
    role = np.zeros(len(dataset), dtype=np.int8)  # 0 train, 1 valid, 2 test (indexed by time position)
    has_test = lengths >= 2
    has_valid = lengths >= 3
    role[indptr[1:][has_test] - 1] = 2
    role[indptr[1:][has_valid] - 2] = 1
    short = int(((lengths > 0) & ~has_valid).sum())
    if short:
        log.info("leave-one-out: %d users have fewer than 3 interactions (no validation item)", short)
    rows_by_role = [np.sort(order[role == r]) for r in range(3)]
    return Split("leave-one-out", *(dataset.take(rows, name=dataset.name) for rows in rows_by_role))


def temporal_cutoff(dataset: Dataset, *, test_fraction: float = 0.1, valid_fraction: float = 0.1) -> Split:
    """Global time split: the latest ``test_fraction`` of interactions is test, the
    ``valid_fraction`` before it validation, the rest train. Cut points fall between timestamps."""
    if dataset.timestamps is None:
        raise DataError(f"{dataset.name}: a temporal split needs timestamps", field="timestamp")
    if not (0 < test_fraction < 1 and 0 <= valid_fraction < 1 and test_fraction + valid_fraction < 1):
        raise DataError("fractions must be in (0, 1) and sum to less than 1")
    ts = dataset.timestamps
    test_cut = np.quantile(ts, 1 - test_fraction, method="higher")
    valid_cut = np.quantile(ts, 1 - test_fraction - valid_fraction, method="higher")
    train = ts < valid_cut
    valid = (ts >= valid_cut) & (ts < test_cut)
    test = ts >= test_cut
    if not train.any() or not test.any():
        raise DataError(f"{dataset.name}: the temporal cut leaves an empty train or test set")
    return Split("temporal", dataset.take(np.flatnonzero(train)), dataset.take(np.flatnonzero(valid)),
                 dataset.take(np.flatnonzero(test)))


def cold_start_items(dataset: Dataset, *, fraction: float = 0.1, seed: int = 0) -> Split:
    """Hold out a random ``fraction`` of items entirely: their interactions are the test set, so a
    model is judged on items it never saw in training (half of them go to validation)."""
    if not 0 < fraction < 1:
        raise DataError(f"cold item fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    seen = np.flatnonzero(dataset.item_popularity > 0)
    n_cold = max(2, round(fraction * len(seen)))
    cold = rng.permutation(seen)[:n_cold]
    valid_items, test_items = cold[: n_cold // 2], cold[n_cold // 2:]
    is_valid = np.isin(dataset.items, valid_items)
    is_test = np.isin(dataset.items, test_items)
    return Split("cold-items", dataset.take(np.flatnonzero(~is_valid & ~is_test)),
                 dataset.take(np.flatnonzero(is_valid)), dataset.take(np.flatnonzero(is_test)))


SPLITS: dict[str, Callable[..., Split]] = {
    "leave-one-out": leave_one_out, "temporal": temporal_cutoff, "cold-items": cold_start_items,
}

RECBOLE_HEADER = {"user": "user_id:token", "item": "item_id:token", "rating": "rating:float",
                  "timestamp": "timestamp:float"}


SEQUENCE_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"


def sequence_rows(split: Split, max_history: int = 50) -> dict[str, list[tuple[str, list[str], str]]]:
    """The split as next-item examples for sequential toolkits: (user, newest ``max_history`` items before the
    target, target). Train holds one example per training interaction after a user's first (every prefix);
    valid predicts each validation item from the whole training sequence; test predicts each test item from
    training plus validation, exactly the histories recllm's ``full`` protocol uses."""
    train, valid, test = split.train, split.valid, split.test
    item_ids, user_ids = sequence_tokens(split), train.user_vocab.ids
    out: dict[str, list[tuple[str, list[str], str]]] = {"train": [], "valid": [], "test": []}
    histories: dict[int, list[int]] = {}
    for user in range(train.n_users):
        seq = [int(i) for i in train.sequence(user)]
        histories[user] = seq
        for j in range(1, len(seq)):
            out["train"].append((user_ids[user], [item_ids[i] for i in seq[max(0, j - max_history):j]],
                                 item_ids[seq[j]]))
    for part, ds in (("valid", valid), ("test", test)):
        for user in range(ds.n_users):
            targets = [int(i) for i in ds.sequence(user)]
            for target in targets:
                seq = histories.setdefault(user, [])
                if seq:
                    out[part].append((user_ids[user], [item_ids[i] for i in seq[-max_history:]], item_ids[target]))
            if part == "valid":
                histories[user] = histories.get(user, []) + targets
    return out


def sequence_tokens(split: Split) -> list[str]:
    """The item tokens of the sequential files: the item ids, or ``i<index>`` for every item when some id holds
    whitespace (a ``token_seq`` field is split on spaces; MovieLens-1M ids are "Title (Year)")."""
    ids = [str(i) for i in split.train.item_vocab.ids]
    return [f"i{k}" for k in range(len(ids))] if any(any(c.isspace() for c in i) for i in ids) else ids


def export_split(split: Split, directory: str | Path, *, name: str | None = None,
                 max_history: int = 50) -> list[Path]:
    """Write the split as plain TSV (train/valid/test.tsv), as RecBole atomic benchmark files for general
    models (NAME/NAME.{train,valid,test}.inter, loaded with ``benchmark_filename: [train, valid, test]``) and
    for sequential models such as RecBole's SASRec (NAME-seq/NAME-seq.*.inter with the ``item_id_list``
    prefix of each example, at most ``max_history`` items: set ``MAX_ITEM_LIST_LENGTH`` to match)."""
    out = Path(directory)
    name = name or split.train.name
    atomic = out / name
    atomic.mkdir(parents=True, exist_ok=True)
    written = []
    for part, ds in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        frame = ds.to_frame()  # rows keep source-file order
        plain = out / f"{part}.tsv"
        frame.to_csv(plain, sep="\t", index=False, float_format="%.10g")
        recbole = atomic / f"{name}.{part}.inter"
        frame.rename(columns=RECBOLE_HEADER).to_csv(recbole, sep="\t", index=False, float_format="%.10g")
        written += [plain, recbole]
    sequential = out / f"{name}-seq"
    sequential.mkdir(parents=True, exist_ok=True)
    for part, rows in sequence_rows(split, max_history).items():
        path = sequential / f"{name}-seq.{part}.inter"
        with path.open("w") as handle:
            handle.write(SEQUENCE_HEADER + "\n")
            for user, history, target in rows:
                handle.write(f"{user}\t{' '.join(history)}\t{target}\n")
        written.append(path)
    config = sequential / "recbole-sequential.yaml"
    config.write_text(
        f"# RecBole 1.2.1, sequential models on exactly this split (data_path: the folder above this one)\n"
        f"dataset: {name}-seq\nbenchmark_filename: [train, valid, test]\n"
        "load_col: {inter: [user_id, item_id_list, item_id]}\nalias_of_item_id: [item_id_list]\n"
        f"MAX_ITEM_LIST_LENGTH: {max_history}\n"
        "eval_args: {order: TO, mode: full}\ntrain_neg_sample_args: ~\nloss_type: CE\nvalid_metric: NDCG@10\n"
        "# RecBole's sequential full ranking does not remove the history items: score recllm's way (history\n"
        "# excluded, ties pessimistic) from the model's scores to compare with recllm's figures\n")
    written.append(config)
    tokens = sequence_tokens(split)
    if tokens != [str(i) for i in split.train.item_vocab.ids]:
        mapping = sequential / "item-tokens.tsv"
        pd.DataFrame({"token": tokens, "item": split.train.item_vocab.ids}).to_csv(mapping, sep="\t", index=False)
        written.append(mapping)
    readme = out / "SPLIT.md"
    readme.write_text(
        f"# {split.kind} split of {name}\n\n" + "\n".join(f"- {k}: {v}" for k, v in split.summary().items())
        + "\n\nPlain files: train.tsv, valid.tsv, test.tsv (columns user, item, rating, timestamp).\n"
        f"RecBole, general models: data_path pointing at this folder, dataset: {name}, "
        "benchmark_filename: [train, valid, test].\n"
        f"RecBole, sequential models (SASRec, GRU4Rec, ...): dataset: {name}-seq, benchmark_filename: "
        f"[train, valid, test], MAX_ITEM_LIST_LENGTH: {max_history}; every training interaction after a user's "
        "first is one example (its prefix in item_id_list); valid and test predict the held-out item from the "
        f"whole history before it; {name}-seq/recbole-sequential.yaml holds the settings RecBole needs for these "
        "files. Item ids with spaces are written as i<index> tokens (item-tokens.tsv maps "
        "them back).\n")
    written.append(readme)
    return written


def read_split(directory: str | Path, *, kind: str = "imported") -> Split:
    """Read train/valid/test.tsv written by ``export_split`` (or by another toolkit in that layout).

    Vocabularies are the union of the three files in first-seen order; valid.tsv may be header-only.
    """
    root = Path(directory)
    tables = {part: read_table(root / f"{part}.tsv", "tsv") for part in ("train", "valid", "test")}
    frames = [t.frame for t in tables.values()]
    for table in tables.values():
        missing = {"user", "item"} - set(table.frame.columns)
        if missing:
            raise DataError(f"missing column '{sorted(missing)[0]}'", path=table.path, field=sorted(missing)[0])
    user_vocab = Vocabulary(pd.unique(pd.concat([f["user"] for f in frames])), "user")
    item_vocab = Vocabulary(pd.unique(pd.concat([f["item"] for f in frames])), "item")
    parts = {}
    for part, table in tables.items():
        if len(table.frame) == 0 and part == "valid":
            parts[part] = Dataset(np.zeros(0), np.zeros(0), user_vocab, item_vocab, name=root.name)
            continue
        columns = InteractionColumns(rating="rating" if "rating" in table.frame else None,
                                     timestamp="timestamp" if "timestamp" in table.frame else None)
        ds = build_dataset(table, columns, duplicates="keep-all", name=root.name)
        parts[part] = Dataset(
            users=user_vocab.indices(ds.user_vocab.lookup_ids(ds.users)),
            items=item_vocab.indices(ds.item_vocab.lookup_ids(ds.items)),
            user_vocab=user_vocab, item_vocab=item_vocab, ratings=ds.ratings, timestamps=ds.timestamps,
            name=root.name)
    return Split(kind, parts["train"], parts["valid"], parts["test"])
