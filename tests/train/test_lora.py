"""LoRA tuning of the real 135M model on CPU: loss, adapter weights, resumption, loading, TALLRec AUC."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recllm.data import DataBundle, Dataset, Item, ItemCatalog
from recllm.data.splits import leave_one_out
from recllm.errors import ConfigError
from recllm.llm import LLM, create_llm
from recllm.llm.resolve import TRAIN_MARKER, resolve_llm
from recllm.prompts import Prompt
from recllm.train.instructions import Example, build_heldout_examples, build_instructions
from recllm.train.lora import LoraTrainConfig, StepRecord, TrainResult, train_lora, tuned_catalog
from recllm.train.tallrec import auc, score_yes_no

QUESTIONS = [("Which letter comes first in the alphabet?", "A"), ("Which letter comes right after A?", "B"),
             ("Which letter comes right before D?", "C"), ("Name the vowel between D and F.", "E")]
# six train and two eval examples (whole users held out): three steps of two per epoch
SETTINGS = {"max_steps": 4, "batch_size": 2, "lr": 5e-3, "dropout": 0.1, "eval_fraction": 0.25,
            "max_length": 64, "save_every": 2, "progress": False}
N_LAYERS, HIDDEN, KV = 30, 576, 192  # SmolLM2-135M: q_proj 576->576, v_proj 576->192
LORA_PARAMS = N_LAYERS * 8 * ((HIDDEN + HIDDEN) + (HIDDEN + KV))


def _examples() -> list[Example]:
    out = []
    for user in range(8):
        question, answer = QUESTIONS[user % 4]
        messages = ({"role": "system", "content": "Answer with one capital letter."},
                    {"role": "user", "content": question})
        prompt = Prompt(task="rank-verbalizer", variant="zero-shot", messages=messages, text=question)
        out.append(Example("rank", prompt, answer, f"u{user}", f"i{user}"))
    return out


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> TrainResult:
    """Four uninterrupted steps, checkpoints every two."""
    return train_lora(_examples(), tmp_path_factory.mktemp("lora") / "run", **SETTINGS)


def test_training_lowers_the_loss_and_records_it(run: TrainResult) -> None:
    assert run.steps == 4 and len(run.history) == 4 and (run.n_train, run.n_eval) == (6, 2)
    assert run.losses[-1] < run.losses[0]
    assert [e.step for e in run.evals] == [0, 3, 4]
    assert run.evals[-1].loss < 0.5 * run.evals[0].loss
    record = json.loads((run.out_dir / TRAIN_MARKER).read_text())
    assert record["base_model"] is None and record["base_model_name"].startswith("SmolLM2-135M")
    assert record["tasks"] == {"rank": 8}
    assert record["hyperparameters"]["r"] == 8 and record["hyperparameters"]["target_modules"] == ["q_proj", "v_proj"]
    assert [h["loss"] for h in record["result"]["history"]] == run.losses
    assert [e["epoch"] for e in record["result"]["epochs"]] == [1, 2]
    assert record["result"]["epochs"][0]["eval_loss"] == run.evals[1].loss
    assert record["result"]["device"] == "cpu" and record["result"]["n_eval"] == 2


def test_only_lora_weights_train_and_they_move(run: TrainResult) -> None:
    assert run.trainable_params == LORA_PARAMS and run.total_params > 100_000_000
    weights = load_file(str(run.out_dir / "adapter_model.safetensors"))
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)
    assert sum(v.numel() for v in weights.values()) == LORA_PARAMS
    lora_b = [v for k, v in weights.items() if "lora_B" in k]  # initialised to zero by LoRA
    assert len(lora_b) == 2 * N_LAYERS and all(v.abs().max() > 0 for v in lora_b)


class _StopError(Exception):
    """Stands for an interrupted run."""


def _stop_at(step: int) -> Callable[[StepRecord], None]:
    def callback(record: StepRecord) -> None:
        if record.step == step:
            raise _StopError
    return callback


def test_resumed_run_ends_with_the_same_weights(run: TrainResult, tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "interrupted"
    with pytest.raises(_StopError):
        train_lora(_examples(), out, callback=_stop_at(3), **SETTINGS)
    assert (out / "checkpoints" / "step-2").is_dir() and not (out / TRAIN_MARKER).exists()
    resumed = train_lora(_examples(), out, resume=True, **SETTINGS)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    assert resumed.losses == run.losses and [e.loss for e in resumed.evals] == [e.loss for e in run.evals]
    mine = load_file(str(out / "adapter_model.safetensors"))
    reference = load_file(str(run.out_dir / "adapter_model.safetensors"))
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[k], reference[k]) for k in mine)


def test_gradient_checkpointing_trains_the_same_adapter(run: TrainResult, tmp_path: Path, one_thread: None) -> None:
    """Recomputing activations in the backward pass (dropout masks replayed) changes memory, not the result."""
    checkpointed = train_lora(_examples(), tmp_path / "checkpointed", gradient_checkpointing=True,
                              **{**SETTINGS, "save_every": None})
    np.testing.assert_allclose(checkpointed.losses, run.losses, rtol=1e-4)
    mine = load_file(str(checkpointed.out_dir / "adapter_model.safetensors"))
    reference = load_file(str(run.out_dir / "adapter_model.safetensors"))
    assert mine.keys() == reference.keys()
    assert all(torch.allclose(mine[k], reference[k], atol=1e-5) for k in mine)


def test_resuming_with_other_settings_is_refused(run: TrainResult) -> None:
    with pytest.raises(ConfigError, match=r"cannot resume.*config"):
        train_lora(_examples(), run.out_dir, resume=True, **{**SETTINGS, "lr": 1e-3})


def test_an_earlier_run_is_not_overwritten_silently(run: TrainResult) -> None:
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_lora(_examples(), run.out_dir, **SETTINGS)


def test_tuned_folder_loads_through_create_llm_and_answers_differently(run: TrainResult, llm: LLM) -> None:
    tuned = create_llm(f"hf:{run.out_dir}")
    assert tuned.model_name.startswith(llm.model_name + "+lora-")
    assert resolve_llm(run.out_dir).adapters == (str(run.out_dir.resolve()),)
    assert not any("lora" in name for name, _ in tuned.model.named_modules())  # merged, no adapter layers
    for example in _examples()[:4]:
        prompt = example.render(tuned)
        letters = ["A", "B", "C", "E"]
        ours, base = tuned.next_token_logprobs(prompt, letters), llm.next_token_logprobs(prompt, letters)
        assert not np.allclose(ours, base)
        assert ours[letters.index(example.target)] > base[letters.index(example.target)]


def test_bfloat16_autocast_trains_on_a_cpu(tmp_path: Path, one_thread: None) -> None:
    result = train_lora(_examples(), tmp_path / "bf16", **{**SETTINGS, "save_every": None, "precision": "bf16",
                                                            "device": "cpu"})
    assert result.precision == "torch.bfloat16" and result.device == "cpu"
    assert result.losses[-1] < result.losses[0]
    assert all(np.isfinite(e.loss) for e in result.evals)


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="target_modules"):
        LoraTrainConfig(target_modules="")
    with pytest.raises(ConfigError, match="needs a GPU"):
        train_lora(_examples(), tmp_path / "x", precision="fp16", device="cpu")
    with pytest.raises(ConfigError, match="no examples"):
        train_lora([], tmp_path / "y")
    with pytest.raises(ConfigError, match="lora config: rank"):
        train_lora(_examples(), tmp_path / "z", rank=4)


def test_auc_on_a_hand_case() -> None:
    # positives 0.9, 0.4, 0.8 against negatives 0.1, 0.4: five pairs won, one tied, of six
    assert auc([1, 0, 1, 0, 1], [0.9, 0.1, 0.4, 0.4, 0.8]) == pytest.approx(5.5 / 6)
    assert auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert auc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0
    assert auc([1, 0, 1, 0], [7, 7, 7, 7]) == 0.5
    with pytest.raises(ConfigError, match="both classes"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(ConfigError, match="0 or 1"):
        auc([2, 0], [0.2, 0.3])


@pytest.fixture
def rated() -> DataBundle:
    """Ten users rating six of eight movies each, ratings from 1 to 5 (seeded)."""
    rng = np.random.default_rng(0)
    users, items, ratings, stamps = [], [], [], []
    for u in range(10):
        for step, i in enumerate(rng.permutation(8)[:6]):
            users.append(f"u{u}")
            items.append(f"m{i}")
            ratings.append(int(rng.integers(1, 6)))
            stamps.append(step)
    dataset = Dataset.from_ids(users, items, ratings=np.array(ratings), timestamps=np.array(stamps), name="rated")
    catalog = ItemCatalog(Item(id=f"m{i}", title=f"Film {i}", year=1990 + i, genres=("Drama",)) for i in range(8))
    return DataBundle(dataset, catalog)


def test_instruction_set_trains_end_to_end_and_tallrec_scores_it(rated: DataBundle, tmp_path: Path,
                                                                  one_thread: None) -> None:
    split = leave_one_out(rated.dataset)
    built = build_instructions(split, rated.catalog, tasks=("yesno", "rank"), naming="random-id", max_history=2,
                               max_examples_per_task=4, n_candidates=3, seed=1)
    result = train_lora(built, tmp_path / "tuned", max_steps=2, batch_size=4, eval_fraction=0, max_length=400,
                        progress=False)
    assert result.steps == 2 and result.n_train == 8 and result.evals == []
    record = json.loads((tmp_path / "tuned" / TRAIN_MARKER).read_text())
    assert record["naming"] == "random-id" and record["instructions"]["counts"] == {"yesno": 4, "rank": 4}
    renamed = tuned_catalog(tmp_path / "tuned", rated.catalog)
    assert [renamed[i].title for i in renamed.ids] == [built.catalog[i].title for i in built.catalog.ids]
    assert renamed["m0"].title.startswith("item_")

    heldout = build_heldout_examples(split, rated.catalog, tasks=("yesno",), naming="random-id", max_history=2,
                                     seed=1)
    model = create_llm(f"hf:{tmp_path / 'tuned'}")
    scores = score_yes_no(model, heldout.examples)
    assert len(scores.labels) == 10 and np.isfinite(scores.score).all()
    assert scores.auc is None or 0 <= scores.auc <= 1
    assert 0 < scores.answer_mass <= 1 and 0 <= scores.accuracy <= 1
    with pytest.raises(ConfigError, match="yesno examples"):
        score_yes_no(model, built.by_task("rank"))


def test_an_unfinished_or_broken_training_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / TRAIN_MARKER).write_text(json.dumps({"base_model": None}))
    with pytest.raises(ConfigError, match="no finished adapter"):
        resolve_llm(folder)
    (folder / TRAIN_MARKER).write_text(json.dumps({"tasks": {}}))
    with pytest.raises(ConfigError, match="base_model"):
        resolve_llm(folder)
