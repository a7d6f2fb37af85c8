"""Training language models on recommendation data: instruction data, LoRA tuning, TALLRec scoring and
semantic ids from item text (TIGER itself is a recommender: ``recllm.models.tiger``).

Names are imported on first use, so ``import recllm.train`` does not load torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "InstructionConfig": "instructions", "InstructionSet": "instructions", "Example": "instructions",
    "build_instructions": "instructions", "build_heldout_examples": "instructions",
    "tuned_catalog": "lora",
    "LoraTrainConfig": "lora", "TrainResult": "lora", "train_lora": "lora",
    "YesNoScores": "tallrec", "score_yes_no": "tallrec", "auc": "tallrec",
    "RQKMeans": "semantic_ids", "RQVAE": "semantic_ids", "SemanticIds": "semantic_ids",
    "build_semantic_ids": "semantic_ids",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recllm.train' has no attribute '{name}'")
    return getattr(importlib.import_module(f"recllm.train.{_WHERE[name]}"), name)
