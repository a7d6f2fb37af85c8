from pathlib import Path

import numpy as np
import pytest

from recllm.data import DataBundle, Dataset
from recllm.errors import ConfigError, NotFittedError, RecllmError, UnknownIdError
from recllm.models import EASE, ItemKNN, MostPopular, Recommender, create_model, model_names
from recllm.models.matrix_factorization import fold_in
from recllm.models.rating import BiasedBaseline, GlobalMean

CLASSIC = ["pop", "itemknn", "ease", "als", "bpr"]


def test_registry_lists_every_model():
    assert set(model_names()) >= {*CLASSIC, "sasrec"}


def test_unknown_model_and_misspelt_parameter_are_errors():
    with pytest.raises(ConfigError, match="unknown model 'knn'"):
        create_model("knn")
    with pytest.raises(ConfigError, match="model 'ease': l3: Extra inputs are not permitted"):
        create_model("ease", {"l3": 5})
    with pytest.raises(ConfigError, match="model 'als': factors: Input should be a valid integer"):
        create_model("als", {"factors": "many"})


def test_popularity_ranks_by_distinct_users(tiny: Dataset):
    model = MostPopular().fit(tiny)
    recs = model.recommend("u4", k=3)
    assert recs.items == ("a", "b", "c")  # a and b tie at 3 users: lower index first; d is history
    assert recs.scores.tolist() == [3, 3, 2]


def test_ease_matches_closed_form(tiny: Dataset):
    model = EASE(l2=1.0).fit(tiny)
    x = tiny.matrix.toarray()
    p = np.linalg.inv(x.T @ x + np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    assert np.allclose(model.weights_, b, atol=1e-5)
    assert np.allclose(np.diag(model.weights_), 0)


def test_itemknn_cosine_with_shrinkage(tiny: Dataset):
    model = ItemKNN(neighbors=5, shrink=1.0).fit(tiny)
    a, b, e = (tiny.item_vocab.index(i) for i in "abe")
    # a and b share users u1, u2, u3; each has 3 users: 3 / (sqrt(3*3) + 1)
    assert model.similarity_[a, b] == pytest.approx(3 / 4)
    # a and e share u2: 1 / (sqrt(3*1) + 1)
    assert model.similarity_[a, e] == pytest.approx(1 / (np.sqrt(3) + 1))


@pytest.mark.parametrize("name", CLASSIC)
def test_contract_on_chain_data(name: str, chain_data: DataBundle, tmp_path: Path):
    ds = chain_data.dataset
    model = create_model(name)
    with pytest.raises(NotFittedError):
        model.recommend("user0")
    model.fit(ds)
    user = ds.user_vocab.id(0)
    seen = set(ds.item_vocab.lookup_ids(ds.sequence(0)))
    recs = model.recommend(user, k=5)
    assert len(recs) == 5 and not seen & set(recs.items)
    assert list(recs.scores) == sorted(recs.scores, reverse=True)
    restricted = model.recommend(user, k=5, candidates=["item3", "item15", "item0"], exclude=None)
    assert set(restricted.items) == {"item3", "item15", "item0"}
    adhoc = model.recommend(history=["item5", "item6"], k=3)
    assert len(adhoc) == 3 and not {"item5", "item6"} & set(adhoc.items)
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        model.recommend("ghost")
    with pytest.raises(UnknownIdError, match="history item 'nope' is not known"):
        model.recommend(history=["nope"])
    assert len(model.recommend(history=["nope", "item5"], unknown_items="skip", k=2)) == 2
    with pytest.raises(RecllmError, match="k must be at least 1"):
        model.recommend(user, k=0)
    saved = model.save(tmp_path / name)
    loaded = Recommender.load(saved)
    assert type(loaded) is type(model) and loaded.hyperparameters() == model.hyperparameters()
    users = np.array([0, 1, -1])
    histories = [ds.sequence(0), ds.sequence(1), ds.sequence(2)]
    assert np.array_equal(loaded.score(users, histories), model.score(users, histories))
    assert loaded.recommend(user, k=5) == recs


@pytest.mark.parametrize("name", ["itemknn", "ease"])
def test_neighbourhood_models_learn_the_chain(name: str, chain_data: DataBundle):
    """In the chain data, a history around item 8 should recommend items near 8, not far ones."""
    model = create_model(name).fit(chain_data.dataset)
    recs = model.recommend(history=["item7", "item8", "item9"], k=4)
    positions = [int(i.removeprefix("item")) for i in recs.items]
    assert all(abs(p - 8) <= 4 for p in positions), positions


def test_same_seed_same_factors(chain_data: DataBundle):
    for name in ("als", "bpr"):
        a = create_model(name, {"seed": 3}).fit(chain_data.dataset)
        b = create_model(name, {"seed": 3}).fit(chain_data.dataset)
        assert np.array_equal(a.item_factors_, b.item_factors_)


def test_fold_in_reproduces_trained_als_users(chain_data: DataBundle):
    """With item factors fixed, one least-squares step is what ALS solves for a user: folding in a known
    user's history gives (nearly) the same ranking as the trained vector."""
    model = create_model("als", {"iterations": 30}).fit(chain_data.dataset)
    ds = chain_data.dataset
    folded = fold_in(model.item_factors_, [ds.sequence(3)], model.alpha, model.regularization)
    trained = model.user_factors_[3]
    cos = folded[0] @ trained / np.linalg.norm(folded[0]) / np.linalg.norm(trained)
    assert cos > 0.95


def test_load_rejects_non_model_folder(tmp_path: Path):
    with pytest.raises(RecllmError, match="not a saved recllm model"):
        Recommender.load(tmp_path)


def test_rating_baselines(tiny: Dataset):
    mean = GlobalMean().fit(tiny)
    assert mean.predict(["u1"], ["a"])[0] == pytest.approx(tiny.ratings.mean())
    bias = BiasedBaseline(user_reg=0, item_reg=0, iterations=20).fit(tiny)
    # u4 rated only d (5); with no regularisation the fit reproduces training ratings closely on average
    assert np.abs(bias.predict(["u1", "u2"], ["a", "b"]) - [5, 5]).max() < 1.5
    assert bias.predict(["stranger"], ["a"])[0] == pytest.approx(bias.mean_ + bias.item_bias_[0])


def test_a_failed_fit_does_not_look_fitted(tiny: Dataset):
    class Broken(EASE):
        def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
            raise MemoryError("simulated: the item-item matrix does not fit")

    model = Broken()
    with pytest.raises(MemoryError):
        model.fit(tiny)
    with pytest.raises(NotFittedError):
        model.recommend("u1")
