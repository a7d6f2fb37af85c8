"""Instruction data: built from training interactions only, item naming, and prompts identical to inference."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from recllm.data import DataBundle, Dataset, Item, ItemCatalog
from recllm.data.splits import Split, leave_one_out
from recllm.errors import ConfigError
from recllm.llm import LLM
from recllm.models.registry import create_model
from recllm.prompts import user_history
from recllm.rerank import LikelihoodReranker, VerbalizerReranker
from recllm.tasks import Explainer, ExplanationChecker, RatingPredictor
from recllm.train.instructions import (
    TASKS,
    Example,
    InstructionSet,
    build_heldout_examples,
    build_instructions,
    random_id_names,
)

SEQUENCES = {
    "u1": ["m1", "m2", "m3", "m4", "m5", "m6"],
    "u2": ["m6", "m5", "m7", "m8", "m9", "m10", "m1"],
    "u3": ["m2", "m6", "m11", "m12", "m3", "m4"],
    "u4": ["m3", "m4", "m5", "m6", "m7", "m8", "m9"],
    "u5": ["m7", "m8", "m9", "m10", "m11", "m12", "m2"],
    "u6": ["m1", "m3", "m5", "m7", "m9", "m11"],
}
GENRES = ["Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi"]


@pytest.fixture
def shows() -> DataBundle:
    """Six users over twelve movies; u1's held-out items m5 and m6 sit in other users' training sequences."""
    rng = np.random.default_rng(3)
    users, items, ratings, stamps = [], [], [], []
    for user, seq in SEQUENCES.items():
        for step, item in enumerate(seq):
            users.append(user)
            items.append(item)
            ratings.append(int(rng.integers(1, 6)))
            stamps.append(100 * step)
    dataset = Dataset.from_ids(users, items, ratings=np.array(ratings), timestamps=np.array(stamps), name="shows")
    catalog = ItemCatalog(Item(id=f"m{i}", title=f"Movie {chr(64 + i)}", year=1980 + 3 * i,
                               genres=(GENRES[i % 6], GENRES[(i * 5) % 6])) for i in range(1, 13))
    return DataBundle(dataset, catalog)


def _train_windows(split: Split, user: str) -> list[str]:
    return [e.item for e in user_history(split.train, user)]


def _held_out(split: Split, user: str) -> set[str]:
    out = set()
    for part in (split.valid, split.test):
        rows = part.users == part.user_vocab.index(user)
        out |= set(part.item_vocab.lookup_ids(part.items[rows]))
    return out


def _assert_from_train_windows(examples: InstructionSet | list[Example], split: Split, max_history: int) -> None:
    """Every example's target is a training interaction and its history the training items just before it."""
    for example in examples:
        train = _train_windows(split, example.user)
        held = _held_out(split, example.user) - set(train)
        windows = [tuple(train[max(0, t - max_history):t]) for t, item in enumerate(train)
                   if item == example.item and t >= 1]
        assert example.history in windows, (example.task, example.user, example.item, example.history)
        assert example.item not in held and not held & set(example.history)


def test_examples_come_only_from_training_windows(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=TASKS, max_history=3, n_candidates=5,
                               explain_liked_only=False)
    _assert_from_train_windows(built, split, 3)
    u1 = [e for e in built if e.user == "u1"]
    assert u1 and all({"m5", "m6"}.isdisjoint({e.item, *e.history}) for e in u1)
    # held out for u1 only: the same items are targets and history for the users who watched them in training
    others = [e for e in built if e.user != "u1" and "m6" in {e.item, *e.history}]
    assert {e.user for e in others} >= {"u2", "u3", "u4"}
    # every training position of every user gives one example per sequence task (windows from position 1)
    positions = sum(len(_train_windows(split, u)) - 1 for u in SEQUENCES)
    assert built.counts["next"] == built.counts["rate"] == built.counts["yesno"] == positions
    assert built.counts["rank"] == positions


def test_a_dataset_is_read_as_training_interactions_only(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    from_split = build_instructions(split, shows.catalog, tasks=("next",), seed=4)
    from_train = build_instructions(split.train, shows.catalog, tasks=("next",), seed=4)
    assert [e.render() for e in from_split] == [e.render() for e in from_train]


def test_no_leakage_on_movielens(ml100k: DataBundle) -> None:
    split = leave_one_out(ml100k.dataset)
    built = build_instructions(split, ml100k.catalog, tasks=("next", "rank", "yesno"), max_examples_per_task=150,
                               max_history=4, seed=2)
    assert len(built) == 450
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist(), strict=True))
    for example in built:
        u, i = split.train.user_vocab.index(example.user), split.train.item_vocab.index(example.item)
        assert (u, i) in train_pairs
    _assert_from_train_windows([e for e in built if e.task != "rank"][:60], split, 4)


def test_building_is_deterministic_by_seed(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)

    def build(seed: int) -> list[tuple[str, str]]:
        built = build_instructions(split, shows.catalog, tasks=("rank", "next"), max_examples_per_task=8, seed=seed)
        return [(e.render(), e.target) for e in built]

    assert build(1) == build(1)
    assert build(1) != build(2)


def test_max_examples_per_task_samples_that_many(shows: DataBundle) -> None:
    built = build_instructions(leave_one_out(shows.dataset), shows.catalog, tasks=("next", "rate"),
                               max_examples_per_task=5)
    assert built.counts == {"next": 5, "rate": 5}
    assert [e.task for e in built] == ["next"] * 5 + ["rate"] * 5


def test_rank_examples_label_the_true_item_among_unseen_negatives(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("rank",), n_candidates=4, seed=0)
    positions = []
    for example in built:
        candidates = example.candidates
        assert len(candidates) == 4 and candidates.count(example.item) == 1
        assert example.prompt.label_of(example.item) == example.target
        assert re.search(rf"^{example.target}\. Movie", example.render(), re.MULTILINE)
        negatives = set(candidates) - {example.item}
        assert not negatives & set(_train_windows(split, example.user))
        positions.append(candidates.index(example.item))
    assert len(set(positions)) == 4  # shuffled: the answer is not always in the same place


def test_rate_and_yesno_targets_follow_the_training_rating(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("rate", "yesno"), like_threshold=3)
    for example in built:
        history = user_history(split.train, example.user)
        rating = next(e.rating for e in history if e.item == example.item)
        assert rating is not None
        if example.task == "rate":
            assert example.target == str(int(rating)) and example.cue == "Rating:"
            assert example.render().endswith("Rating:")
        else:
            assert example.label == int(rating >= 3)
            assert example.target == ("Yes" if rating >= 3 else "No")
            assert "A rating of 3 or more" in example.render()
            assert f"(rated {history[0].rating:g} of 5)" in example.render()
    labels = [e.label for e in built.by_task("yesno")]
    assert 0 in labels and 1 in labels


def test_explanations_cite_only_shown_history_with_true_facts(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("explain",), explain_liked_only=False, max_history=4)
    checker = ExplanationChecker(shows.catalog)
    assert len(built) > 5
    for example in built:
        violations, cited = checker.check(example.target, example.history, example.item)
        assert violations == []
        assert set(cited) - {example.item}, example.target  # cites at least one history item
        assert "which you watched" in example.target


def test_explain_keeps_liked_items_only_by_default(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("explain",))
    for example in built:
        rating = next(e.rating for e in user_history(split.train, example.user) if e.item == example.item)
        assert rating is not None and rating >= 4
    assert built.skipped["explain"] > 0


def test_random_ids_are_a_seeded_permutation_not_the_catalog_order(ml100k: DataBundle) -> None:
    names = random_id_names(ml100k.catalog, seed=0)
    numbers = [int(names[i].removeprefix("item_")) for i in ml100k.catalog.ids]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert sum(n == position + 1 for position, n in enumerate(numbers)) < 10
    assert abs(np.corrcoef(numbers, np.arange(len(numbers)))[0, 1]) < 0.1
    assert random_id_names(ml100k.catalog, seed=0) == names
    assert random_id_names(ml100k.catalog, seed=1) != names


def test_random_id_prompts_name_items_by_id_only(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("next", "rank"), naming="random-id", seed=5)
    assert built.names is not None
    for example in built:
        text = example.render()
        assert "Movie " not in text and "genres" not in text
        if example.task == "next":
            assert example.target == " " + built.names[example.item]
        assert all(built.names[h] in text for h in example.history)
    assert built.catalog[built.by_task("next")[0].item].title.startswith("item_")
    with_facts = build_instructions(split, shows.catalog, tasks=("next",), naming="random-id", id_facts=True)
    assert "genres" in with_facts.examples[0].render()


def test_semantic_naming_accepts_mappings_callables_and_semantic_ids(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    codes = {f"m{i}": f"<a_{i % 3}><b_{i}>" for i in range(1, 13)}

    class Codes:
        def token_strings(self, item: str) -> str:
            return codes[item]

    outputs = []
    for semantic in (codes, codes.__getitem__, Codes()):
        built = build_instructions(split, shows.catalog, tasks=("next",), naming="semantic", semantic_ids=semantic)
        outputs.append([(e.render(), e.target) for e in built])
        assert all(e.target == " " + codes[e.item] for e in built)
    assert outputs[0] == outputs[1] == outputs[2]
    partial = {k: v for k, v in codes.items() if k != "m7"}
    with pytest.raises(ConfigError, match="m7"):
        build_instructions(split, shows.catalog, tasks=("next",), naming="semantic", semantic_ids=partial)
    with pytest.raises(ConfigError, match="semantic ids"):
        build_instructions(split, shows.catalog, tasks=("next",), naming="semantic")
    clash = {**codes, "m2": codes["m1"]}
    with pytest.raises(ConfigError, match="same name"):
        build_instructions(split, shows.catalog, tasks=("next",), naming="semantic", semantic_ids=clash)


@pytest.mark.parametrize(("options", "message"), [
    ({"tasks": ("next", "recommend")}, "unknown instruction task 'recommend'"),
    ({"naming": "sequential"}, "unknown item naming 'sequential'"),
    ({"tasks": ()}, "no instruction task"),
    ({"n_candidates": 1}, "n_candidates"),
    ({"prompt_options": {"llm": None}}, "prompt_options may not set 'llm'"),
    ({"epochs": 3}, "epochs"),
])
def test_bad_options_are_config_errors(shows: DataBundle, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_instructions(leave_one_out(shows.dataset), shows.catalog, **options)


def test_rating_tasks_need_ratings(chain_data: DataBundle) -> None:
    with pytest.raises(ConfigError, match="need ratings"):
        build_instructions(chain_data.dataset, chain_data.catalog, tasks=("next", "yesno"))
    built = build_instructions(chain_data.dataset, chain_data.catalog, tasks=("next", "rank"), max_examples_per_task=3)
    assert len(built) == 6


def test_heldout_examples_target_the_test_item_after_train_and_valid(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    held = build_heldout_examples(split, shows.catalog, tasks=("yesno", "rank"), max_history=10, n_candidates=4)
    assert held.counts == {"yesno": len(SEQUENCES), "rank": len(SEQUENCES)}
    for example in held.by_task("yesno"):
        seq = SEQUENCES[example.user]
        assert example.item == seq[-1] and example.history == tuple(seq[:-1])
    valid = build_heldout_examples(split, shows.catalog, tasks=("next",), part="valid")
    assert all(e.item == SEQUENCES[e.user][-2] and e.history == tuple(SEQUENCES[e.user][:-2]) for e in valid)


def test_prompts_are_exactly_what_the_inference_components_read(shows: DataBundle, llm: LLM) -> None:
    split = leave_one_out(shows.dataset)
    built = build_instructions(split, shows.catalog, tasks=("next", "rank", "rate", "explain"), llm=llm, seed=3,
                               max_history=3, max_examples_per_task=3, explain_liked_only=False, n_candidates=5)
    assert built.counts == {"next": 3, "rank": 3, "rate": 3, "explain": 3}
    options = {"max_history": 3}
    verbalizer = VerbalizerReranker(llm, shows.catalog, prompt_options=options)
    likelihood = LikelihoodReranker(llm, shows.catalog, prompt_options=options)
    rating = RatingPredictor(llm, shows.catalog, **options)
    explainer = Explainer(llm, shows.catalog, **options)
    for example in built:
        history = user_history(split.train, example.user)
        before = history[:[e.item for e in history].index(example.item)]
        ids = [e.item for e in before]
        if example.task == "rank":
            prompt = verbalizer.builder.build(ids, candidates=example.candidates)
            assert prompt.render(llm) == example.render(llm)
            assert example.target in prompt.choices
            scores = llm.next_token_logprobs(example.render(llm), list(prompt.choices))
            assert np.isfinite(scores).all()
        elif example.task == "next":
            prompt = likelihood.builder.build(ids, candidates=(example.item,))
            assert prompt.render(llm) == example.render(llm)
            assert example.target == prompt.continuations[0] == " " + shows.catalog[example.item].label()
        elif example.task == "rate":
            prompt = rating.builder.build(before, target=example.item)
            assert prompt.render(llm) + rating.cue == example.render(llm)
        else:
            prompt = explainer.builder.build(ids, target=example.item)
            assert prompt.render(llm) == example.render(llm)


# ---- hard negatives (LlamaRec): the retriever's own top items for the history before the target ----------------
def _bundle(sequences: dict[str, list[str]], catalog: ItemCatalog) -> DataBundle:
    users = [u for u, seq in sequences.items() for _ in seq]
    items = [i for seq in sequences.values() for i in seq]
    stamps = [100 * step for seq in sequences.values() for step in range(len(seq))]
    return DataBundle(Dataset.from_ids(users, items, timestamps=np.array(stamps), name="shows"), catalog)


def test_hard_negatives_are_the_retrievers_top_items_for_the_history_before_the_target(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    retriever = create_model("itemknn", {"neighbors": 5}).fit(split.train)
    built = build_instructions(split, shows.catalog, tasks=("rank",), n_candidates=4, negatives="retriever",
                               retriever=retriever, max_history=3)
    vocab = retriever.item_vocab
    assert vocab is not None and built.counts["rank"] > 0
    positions = []
    for example in built:
        train = _train_windows(split, example.user)
        t = next(t for t, item in enumerate(train) if item == example.item and tuple(train[max(0, t - 3):t])
                 == example.history)
        scores = retriever.score(np.array([-1]), [vocab.indices(train[:t])])[0].astype(np.float64)
        scores[vocab.indices(train)] = -np.inf  # never the user's own training items
        ids = np.asarray(vocab.ids, dtype=str)
        expected = set(ids[np.lexsort((ids, -scores))[:3]])
        assert set(example.candidates) - {example.item} == expected
        positions.append(example.candidates.index(example.item))
    assert len(set(positions)) > 1  # still shuffled


def test_hard_negatives_never_see_held_out_interactions(shows: DataBundle) -> None:
    """Two data sets that differ only in their held-out (validation and test) interactions give the same tuning
    data, and a retriever fitted on more than the training part is refused."""
    changed = {user: seq[:-2] + [m for m in (f"m{i}" for i in range(12, 0, -1)) if m not in seq][:2]
               for user, seq in SEQUENCES.items()}
    assert changed != SEQUENCES
    built = []
    for bundle in (shows, _bundle(changed, shows.catalog)):
        split = leave_one_out(bundle.dataset)
        retriever = create_model("ease", {"l2": 10.0}).fit(split.train)
        built.append([(e.render(), e.target) for e in build_instructions(
            split, shows.catalog, tasks=("rank",), n_candidates=4, negatives="retriever", retriever=retriever)])
    assert built[0] == built[1]
    split = leave_one_out(shows.dataset)
    everything = create_model("ease", {"l2": 10.0}).fit(shows.dataset)
    with pytest.raises(ConfigError, match="not fitted on exactly the training part"):
        build_instructions(split, shows.catalog, tasks=("rank",), negatives="retriever", retriever=everything)
    with pytest.raises(ConfigError, match="not fitted on exactly the training part"):
        build_heldout_examples(split, shows.catalog, tasks=("rank",), negatives="retriever", retriever=everything)


def test_hard_negatives_need_a_retriever_and_a_retriever_needs_them(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    with pytest.raises(ConfigError, match="needs a retriever fitted on the training part"):
        build_instructions(split, shows.catalog, tasks=("rank",), negatives="retriever")
    retriever = create_model("pop").fit(split.train)
    with pytest.raises(ConfigError, match="negatives='random'"):
        build_instructions(split, shows.catalog, tasks=("rank",), retriever=retriever)


def test_heldout_hard_negatives_come_from_the_training_retriever(shows: DataBundle) -> None:
    split = leave_one_out(shows.dataset)
    retriever = create_model("pop").fit(split.train)
    built = build_heldout_examples(split, shows.catalog, tasks=("rank",), n_candidates=3, negatives="retriever",
                                   retriever=retriever)
    counts = Counter(split.train.item_vocab.lookup_ids(split.train.items))
    assert built.counts["rank"] == len(SEQUENCES)
    for example in built:
        seen = set(_train_windows(split, example.user)) | _held_out(split, example.user)  # history, valid, target
        popular = sorted((i for i in counts if i not in seen), key=lambda i: (-counts[i], i))  # ties by id
        assert set(example.candidates) - {example.item} == set(popular[:2])
