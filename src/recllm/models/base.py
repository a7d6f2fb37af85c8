"""The Recommender contract: fit, score, recommend for a known user or an ad-hoc history, save/load.

Persistence is safetensors arrays plus a JSON config (never pickle), so a saved model can be inspected
and loaded without running untrusted code.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pydantic
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from recllm.config import build, load_json_record, signature_model
from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.vocabulary import Vocabulary
from recllm.errors import ConfigError, NotFittedError, RecllmError, UnknownIdError
from recllm.ranking import top_k
from recllm.registry import Registry

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
ARRAYS_FILE = "arrays.safetensors"

MODELS: Registry[type[Recommender]] = Registry("model", "recllm.models")
"""Every recommender by name: the built-ins (registered lazily in ``recllm.models.registry``) and plugins
from the ``recllm.models`` entry-point group."""
MODEL_REGISTRY = MODELS
"""The same registry under its earlier name."""


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender creatable and loadable by its ``name``."""
    MODELS.register(cls.name, cls)
    return cls


class Recommender(ABC):
    """Base of every classic recommender.

    Subclasses declare hyper-parameters as keyword arguments of ``__init__`` (stored on ``self`` under
    the same names) and implement ``_fit``, ``score`` and the array hooks for persistence. Item and user
    ids are external strings at this interface; indices never leak out of ``recommend``.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None
        self._history_indptr: np.ndarray | None = None
        self._history_items: np.ndarray | None = None

    # ---- hyper-parameters -------------------------------------------------------------------------
    @classmethod
    def config_model(cls) -> type[pydantic.BaseModel]:
        """A pydantic model mirroring ``__init__``'s keyword arguments; unknown keys are errors."""
        return signature_model(cls)

    @classmethod
    def from_config(cls, params: dict[str, Any] | None = None) -> Self:
        validated = build(cls.config_model(), params or {}, where=f"model '{cls.name}'")
        return cls(**validated.model_dump())

    def hyperparameters(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.config_model().model_fields}

    # ---- training ---------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, valid: Dataset | None = None) -> Self:
        """Train on ``dataset``; iterative models stop early on NDCG@10 over ``valid`` (one target per user)."""
        if len(dataset) == 0:
            raise RecllmError(f"cannot fit {self.name} on an empty dataset")
        self.user_vocab = dataset.user_vocab
        self.item_vocab = dataset.item_vocab
        self._history_indptr = np.asarray(dataset.sequence_indptr)
        self._history_items = np.asarray(dataset.sequence_items)
        try:
            self._fit(dataset, valid)
        except BaseException:
            self.user_vocab = self.item_vocab = None  # a failed fit must not look fitted
            raise
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None: ...

    def fitted_on(self, dataset: Dataset) -> bool:
        """Whether this model was fitted on exactly ``dataset``'s interactions (same items, same histories): lets
        callers prove that a model saw no held-out interaction."""
        if self.item_vocab is None or self._history_indptr is None or self._history_items is None:
            return False
        return (self.item_vocab == dataset.item_vocab and self.user_vocab == dataset.user_vocab
                and np.array_equal(self._history_indptr, np.asarray(dataset.sequence_indptr))
                and np.array_equal(self._history_items, np.asarray(dataset.sequence_items)))

    # ---- scoring ----------------------------------------------------------------------------------
    @abstractmethod
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (len(users), n_items) float32. ``users[b]`` is a user index or -1 for an ad-hoc user;
        ``histories[b]`` the item indices that user interacted with, oldest first."""

    @property
    def n_items(self) -> int:
        self._require_fitted()
        assert self.item_vocab is not None
        return len(self.item_vocab)

    def history_of(self, user: int) -> np.ndarray:
        """Training history (item indices, oldest first) of a user index."""
        self._require_fitted()
        assert self._history_indptr is not None and self._history_items is not None
        return self._history_items[self._history_indptr[user]:self._history_indptr[user + 1]]

    def recommend(
        self,
        user: str | int | None = None,
        *,
        history: Iterable[str | int] | None = None,
        k: int = 10,
        candidates: Iterable[str | int] | None = None,
        exclude: Iterable[str | int] | str | None = "history",
        unknown_items: str = "error",
    ) -> ItemList:
        """Top-``k`` items for a known ``user`` or an ad-hoc ``history`` (item ids, oldest first).

        ``candidates`` restricts the ranking to those items; ``exclude`` is ``"history"`` (default: items
        already in the history), ``None``, or explicit item ids. ``unknown_items="skip"`` drops history
        items the model does not know (logging how many) instead of raising.
        """
        self._require_fitted()
        assert self.item_vocab is not None and self.user_vocab is not None
        if k < 1:
            raise RecllmError(f"k must be at least 1, got {k}")
        if (user is None) == (history is None):
            raise RecllmError("recommend needs exactly one of `user` or `history`")
        for label, value in (("history", history), ("candidates", candidates)):
            if isinstance(value, str):
                raise RecllmError(f"{label} must be a list of item ids, not one string ({value[:40]!r})")
        if user is not None:
            user_index = self.user_vocab.index(user)
            seq = self.history_of(user_index)
        else:
            user_index = -1
            seq = self._history_indices(history or [], unknown_items)
        scores = self.score(np.array([user_index]), [seq])[0].astype(np.float64)
        mask = np.zeros(self.n_items, dtype=bool)
        if candidates is not None:
            cand = self.item_vocab.indices(list(candidates))
            if len(cand) == 0:
                return ItemList.empty()
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[cand] = True
            mask |= ~allowed
        if isinstance(exclude, str):
            if exclude != "history":
                raise RecllmError(f"exclude must be 'history', None or item ids, got '{exclude}'")
            mask[seq] = True
        elif exclude is not None:
            mask[self.item_vocab.indices(list(exclude), missing="skip")] = True
        scores[mask] = -np.inf
        available = int((~mask).sum())
        best = top_k(scores[None, :], min(k, available))[0]
        return ItemList(tuple(self.item_vocab.lookup_ids(best)), scores[best])

    def _history_indices(self, history: Iterable[str | int], unknown_items: str) -> np.ndarray:
        assert self.item_vocab is not None
        ids = [str(i) for i in history]
        if unknown_items not in ("error", "skip"):
            raise RecllmError(f"unknown_items must be 'error' or 'skip', got '{unknown_items}'")
        marked = self.item_vocab.indices(ids, missing="mark")
        if (marked < 0).any():
            if unknown_items == "error":
                first = ids[int(np.flatnonzero(marked < 0)[0])]
                raise UnknownIdError(f"history item '{first}' is not known to the {self.name} model")
            log.warning("%d history items unknown to %s were skipped", int((marked < 0).sum()), self.name)
        return marked[marked >= 0]

    def _require_fitted(self) -> None:
        if self.item_vocab is None:
            raise NotFittedError(f"{self.name} model is not fitted; call fit() or load() first")

    # ---- persistence ------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays to persist (subclasses override)."""
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Rebuild learned state from ``_arrays`` output (subclasses override)."""

    def save(self, directory: str | Path) -> Path:
        self._require_fitted()
        assert self.item_vocab is not None and self.user_vocab is not None
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._arrays().items()}
        assert self._history_indptr is not None and self._history_items is not None
        arrays["history.indptr"] = np.ascontiguousarray(self._history_indptr, dtype=np.int64)
        arrays["history.items"] = np.ascontiguousarray(self._history_items, dtype=np.int32)
        save_file(arrays, str(out / ARRAYS_FILE))
        config = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "hyperparameters": self.hyperparameters(),
            "user_ids": list(self.user_vocab.ids),
            "item_ids": list(self.item_vocab.ids),
        }
        (out / CONFIG_FILE).write_text(json.dumps(config))
        return out

    @staticmethod
    def load(directory: str | Path) -> Recommender:
        """Load any registered recommender saved with ``save``."""
        path = Path(directory)
        config_path = path / CONFIG_FILE
        if not config_path.exists():
            raise RecllmError(f"{path}: not a saved recllm model (no {CONFIG_FILE})")
        config = load_json_record(config_path, version=FORMAT_VERSION, what="model config", error=RecllmError)
        import recllm.models.registry  # noqa: F401  (registers the built-in models)

        try:
            cls = MODELS.get_component(str(config.get("model", "")))
        except ConfigError:
            raise RecllmError(f"{config_path}: unknown model '{config.get('model')}'") from None
        model = cls.from_config(config["hyperparameters"])
        arrays = load_file(str(path / ARRAYS_FILE))
        model.user_vocab = Vocabulary(config["user_ids"], kind="user")
        model.item_vocab = Vocabulary(config["item_ids"], kind="item")
        model._history_indptr = arrays.pop("history.indptr")
        model._history_items = arrays.pop("history.items")
        model._restore({k.removeprefix("model."): v for k, v in arrays.items()})
        return model


def history_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary CSR (len(histories), n_items) from item-index histories."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate(histories).astype(np.int32) if len(histories) else np.zeros(0, np.int32)
    mat = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat
