"""``RecommenderContract``: the checks every ``recllm.models.base.Recommender`` must pass, as a pytest mixin.

A subclass names the model (``make_model``) and, optionally, the data (``make_dataset``); the model is fitted
once per test class and every ``test_*`` method below checks one promise of the ``Recommender`` interface:
fitting, scoring, recommending for a known user or an ad-hoc history, candidates and exclusions, argument
errors, hyper-parameters, and saving as safetensors plus JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from safetensors.numpy import load_file

from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.errors import ConfigError, NotFittedError, RecllmError, UnknownIdError
from recllm.models.base import Recommender
from recllm.testing.data import ring_dataset

__all__ = ["FittedCase", "RecommenderContract"]

@dataclass(frozen=True)
class FittedCase:
    """A model, what its ``fit`` returned, and the dataset it was fitted on (shared by one test class)."""

    model: Recommender
    returned: object
    dataset: Dataset

    def user_ids(self, n: int = 3) -> list[str]:
        """The first ``n`` users with a training history."""
        active = self.dataset.active_users[:n]
        return [self.dataset.user_vocab.id(int(u)) for u in active]

    def history_ids(self, user: str) -> list[str]:
        """The user's training items (oldest first) as ids."""
        return self.dataset.item_vocab.lookup_ids(self.dataset.sequence(self.dataset.user_vocab.index(user)))

    def unseen_ids(self, user: str) -> list[str]:
        """Items of the vocabulary the user has not interacted with, in vocabulary order."""
        seen = set(self.history_ids(user))
        return [i for i in self.dataset.item_vocab.ids if i not in seen]


class RecommenderContract:
    """Mixin of contract tests for a ``recllm.models.base.Recommender``.

    Override ``make_model`` (a fresh, unfitted model with small hyper-parameters; it must be registered with
    ``@register`` so that ``Recommender.load`` finds it) and, if the default ring dataset does not suit the
    model, ``make_dataset``. When building the model needs pytest fixtures, override the class-scoped
    ``contract_case`` fixture instead. Class attributes adjust the checks to documented model behaviour:

    - ``history_defines_user``: a known user is scored from their training history alone, so an ad-hoc
      ``history`` equal to it gives the same recommendations (False for models with learned user vectors,
      such as ALS, which fold an ad-hoc history in instead);
    - ``deterministic_fit``: fitting the same model on the same data twice gives the same scores;
    - ``k``: the list length the checks ask for (the dataset must leave each sampled user more unseen items).
    """

    k: ClassVar[int] = 5
    history_defines_user: ClassVar[bool] = True
    deterministic_fit: ClassVar[bool] = True
    score_tolerance: ClassVar[float] = 1e-5
    """Absolute tolerance when the same scores are computed in two ways (a batch against one row, two fits)."""

    # ---- hooks ------------------------------------------------------------------------------------
    def make_model(self) -> Recommender:
        """A fresh, unfitted model (small and fast: the suite fits it once or twice)."""
        raise NotImplementedError(f"{type(self).__name__} must override make_model() (or the contract_case fixture)")

    def make_dataset(self) -> Dataset:
        """The training data; every user needs two or more items in their history and more than ``k`` unseen items."""
        return ring_dataset()

    @pytest.fixture(scope="class")
    @classmethod
    def contract_case(cls) -> FittedCase:
        """The model fitted once on ``make_dataset()`` for the whole test class."""
        hooks = cls()
        dataset = hooks.make_dataset()
        model = hooks.make_model()
        return FittedCase(model, model.fit(dataset), dataset)

    # ---- before and while fitting -----------------------------------------------------------------
    def test_an_unfitted_model_raises_not_fitted_error(self, tmp_path: Path) -> None:
        model = self.make_model()
        with pytest.raises(NotFittedError):
            model.recommend("u0")
        with pytest.raises(NotFittedError):
            model.recommend(history=[])
        with pytest.raises(NotFittedError):
            _ = model.n_items
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "model")
        assert not (tmp_path / "model").exists()

    def test_fitting_an_empty_dataset_is_an_error_and_leaves_the_model_unfitted(self) -> None:
        dataset = self.make_dataset()
        model = self.make_model()
        with pytest.raises(RecllmError):
            model.fit(dataset.take(np.zeros(0, dtype=np.int64)))
        with pytest.raises(NotFittedError):
            model.recommend(history=[])

    def test_fit_returns_the_model_and_adopts_the_vocabularies(self, contract_case: FittedCase) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        assert contract_case.returned is model
        assert model.item_vocab == dataset.item_vocab and model.user_vocab == dataset.user_vocab
        assert model.n_items == dataset.n_items

    def test_fitting_again_gives_the_same_scores(self, contract_case: FittedCase) -> None:
        if not self.deterministic_fit:
            pytest.skip("the model does not promise a deterministic fit")
        dataset = contract_case.dataset
        again = self.make_model().fit(dataset)
        users, histories = _known_users(dataset)
        np.testing.assert_allclose(again.score(users, histories), contract_case.model.score(users, histories),
                                   rtol=0, atol=self.score_tolerance)

    # ---- scoring ----------------------------------------------------------------------------------
    def test_scores_are_one_finite_float32_row_per_user(self, contract_case: FittedCase) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        users, histories = _known_users(dataset)
        for given_users in (users, np.full(len(users), -1)):  # known users, then the same histories ad hoc
            scores = model.score(given_users, histories)
            assert isinstance(scores, np.ndarray)
            assert scores.shape == (len(users), dataset.n_items)
            assert scores.dtype == np.float32
            assert np.isfinite(scores).all()

    def test_scoring_one_user_alone_gives_their_row_of_the_batch(self, contract_case: FittedCase) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        users, histories = _known_users(dataset)
        batch = model.score(users, histories)
        for row in range(min(3, len(users))):
            alone = model.score(users[row:row + 1], [histories[row]])
            np.testing.assert_allclose(alone[0], batch[row], rtol=1e-5, atol=self.score_tolerance)

    # ---- recommending -----------------------------------------------------------------------------
    def test_recommend_gives_k_distinct_unseen_known_items_best_first(self, contract_case: FittedCase) -> None:
        model = contract_case.model
        known = set(contract_case.dataset.item_vocab.ids)
        for user in contract_case.user_ids():
            recs = model.recommend(user, k=self.k)
            assert isinstance(recs, ItemList)
            assert len(recs) == self.k and len(set(recs.items)) == self.k
            assert set(recs.items) <= known
            assert not set(recs.items) & set(contract_case.history_ids(user))
            assert np.isfinite(recs.scores).all()
            assert (np.diff(recs.scores) <= 0).all(), "scores must be best first"

    def test_recommend_scores_are_the_models_scores(self, contract_case: FittedCase) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        user = contract_case.user_ids(1)[0]
        index = dataset.user_vocab.index(user)
        row = model.score(np.array([index]), [dataset.sequence(index)])[0].astype(np.float64)
        recs = model.recommend(user, k=dataset.n_items, exclude=None)
        assert sorted(recs.items) == sorted(dataset.item_vocab.ids)
        np.testing.assert_allclose(recs.scores, row[dataset.item_vocab.indices(recs.items)], rtol=1e-6)
        np.testing.assert_allclose(recs.scores, np.sort(row)[::-1], rtol=1e-6)

    def test_k_beyond_the_catalog_lists_every_unseen_item_once(self, contract_case: FittedCase) -> None:
        user = contract_case.user_ids(1)[0]
        recs = contract_case.model.recommend(user, k=contract_case.dataset.n_items + 5)
        assert sorted(recs.items) == sorted(contract_case.unseen_ids(user))

    def test_a_shorter_list_is_a_prefix_of_a_longer_one(self, contract_case: FittedCase) -> None:
        user = contract_case.user_ids(1)[0]
        longer = contract_case.model.recommend(user, k=self.k + 3)
        shorter = contract_case.model.recommend(user, k=self.k)
        assert shorter.items == longer.items[:self.k]

    def test_candidates_restrict_the_ranking(self, contract_case: FittedCase) -> None:
        model = contract_case.model
        user = contract_case.user_ids(1)[0]
        seen, unseen = contract_case.history_ids(user)[:2], contract_case.unseen_ids(user)[-3:]
        candidates = [*seen, *unseen]
        default = model.recommend(user, k=10, candidates=candidates)
        assert sorted(default.items) == sorted(unseen)  # history items are still excluded
        everything = model.recommend(user, k=10, candidates=candidates, exclude=None)
        assert sorted(everything.items) == sorted(candidates)
        top = model.recommend(user, k=2, candidates=candidates, exclude=None)
        assert top.items == everything.items[:2]
        assert len(model.recommend(user, k=3, candidates=[])) == 0
        with pytest.raises(UnknownIdError):
            model.recommend(user, k=3, candidates=[*unseen, "no-such-item-id"])

    def test_explicit_exclusions_replace_the_history_default(self, contract_case: FittedCase) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        user = contract_case.user_ids(1)[0]
        excluded = set(model.recommend(user, k=3).items)
        recs = model.recommend(user, k=dataset.n_items, exclude=sorted(excluded))
        assert set(recs.items) == set(dataset.item_vocab.ids) - excluded  # history items are back
        with pytest.raises(RecllmError):
            model.recommend(user, k=3, exclude="everything")

    def test_an_adhoc_history_gives_k_distinct_items_outside_it(self, contract_case: FittedCase) -> None:
        model = contract_case.model
        for user in contract_case.user_ids():
            history = contract_case.history_ids(user)
            adhoc = model.recommend(history=history, k=self.k)
            assert len(adhoc) == self.k and len(set(adhoc.items)) == self.k
            assert not set(adhoc.items) & set(history)
            assert np.isfinite(adhoc.scores).all() and (np.diff(adhoc.scores) <= 0).all()
            if self.history_defines_user:
                known = model.recommend(user, k=self.k)
                assert adhoc.items == known.items
                np.testing.assert_allclose(adhoc.scores, known.scores, rtol=1e-5, atol=self.score_tolerance)

    def test_an_empty_history_still_gets_recommendations(self, contract_case: FittedCase) -> None:
        recs = contract_case.model.recommend(history=[], k=self.k)
        assert len(recs) == self.k and len(set(recs.items)) == self.k
        assert np.isfinite(recs.scores).all()

    def test_unknown_history_items_raise_or_are_skipped_as_asked(self, contract_case: FittedCase) -> None:
        model = contract_case.model
        history = contract_case.history_ids(contract_case.user_ids(1)[0])
        with pytest.raises(UnknownIdError):
            model.recommend(history=[*history, "no-such-item-id"], k=self.k)
        skipped = model.recommend(history=["no-such-item-id", *history], k=self.k, unknown_items="skip")
        plain = model.recommend(history=history, k=self.k)
        assert skipped.items == plain.items
        with pytest.raises(RecllmError):
            model.recommend(history=history, k=self.k, unknown_items="ignore")

    def test_a_bare_string_history_is_refused(self, contract_case: FittedCase) -> None:
        """A string is an iterable of characters: read as a history it would silently name other items (with
        numeric ids, ``"12"`` would become items ``"1"`` and ``"2"``), so it must be an error, as for re-rankers."""
        item = contract_case.history_ids(contract_case.user_ids(1)[0])[-1]
        with pytest.raises(RecllmError):
            contract_case.model.recommend(history=item, k=self.k, unknown_items="skip")

    def test_bad_arguments_are_errors(self, contract_case: FittedCase) -> None:
        model = contract_case.model
        user = contract_case.user_ids(1)[0]
        for k in (0, -1):
            with pytest.raises(RecllmError, match="k must be at least 1"):
                model.recommend(user, k=k)
        with pytest.raises(RecllmError, match="exactly one"):
            model.recommend(user, history=contract_case.history_ids(user))
        with pytest.raises(RecllmError, match="exactly one"):
            model.recommend()
        with pytest.raises(UnknownIdError):
            model.recommend("no-such-user-id")

    # ---- configuration and persistence ------------------------------------------------------------
    def test_hyperparameters_are_json_and_round_trip_through_from_config(self) -> None:
        model = self.make_model()
        params = model.hyperparameters()
        assert set(params) == set(type(model).config_model().model_fields)
        assert json.loads(json.dumps(params)) == params
        assert type(model).from_config(params).hyperparameters() == params

    def test_an_unknown_hyperparameter_is_a_config_error(self) -> None:
        cls = type(self.make_model())
        with pytest.raises(ConfigError, match="no_such_hyperparameter"):
            cls.from_config({"no_such_hyperparameter": 1})

    def test_save_and_load_round_trip_gives_identical_scores_without_pickle(self, contract_case: FittedCase,
                                                                          tmp_path: Path) -> None:
        model, dataset = contract_case.model, contract_case.dataset
        saved = model.save(tmp_path / "model")
        assert Path(saved) == tmp_path / "model"
        files = [p for p in Path(saved).rglob("*") if p.is_file()]
        assert files
        for path in files:  # each file must parse as JSON or safetensors: nothing that unpickles
            if path.suffix == ".json":
                json.loads(path.read_text())
            else:
                assert path.suffix == ".safetensors", f"{path.name} is neither JSON nor safetensors"
                load_file(str(path))
        loaded = Recommender.load(saved)
        assert type(loaded) is type(model)
        assert loaded.hyperparameters() == model.hyperparameters()
        assert loaded.item_vocab == model.item_vocab and loaded.user_vocab == model.user_vocab
        users, histories = _known_users(dataset)
        for given_users in (users, np.full(len(users), -1)):
            np.testing.assert_array_equal(loaded.score(given_users, histories), model.score(given_users, histories))
        user = contract_case.user_ids(1)[0]
        assert loaded.recommend(user, k=self.k) == model.recommend(user, k=self.k)


def _known_users(dataset: Dataset) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every active user's index and training history."""
    users = dataset.active_users
    return users, [dataset.sequence(int(u)) for u in users]
