"""Item text embedded by a causal language model: the mean of its last hidden states over the text's tokens.

This is how a recommender reads what the language model knows about an item (LLM-ESR and LLMEmb embed item
text with an LLM for the same reason), computed once per catalogue and stored like any other embedding.
Registered as embedder ``lm`` (``lm`` is the pinned default model, ``lm:PATH`` any model ``hf`` loads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from recllm.config import checked
from recllm.llm.base import Embedder


class LMEmbedder(Embedder):
    """Mean-pooled hidden states of layer ``layer`` (-1: the last) of the ``hf`` model ``model``."""

    target_argument = "model"

    @checked()
    def __init__(self, model: str | Path | None = None, *, layer: int = -1, device: str = "auto",
                 batch_size: Annotated[int, Field(ge=1)] = 16, max_tokens: Annotated[int, Field(ge=8)] = 128
                 ) -> None:
        from recllm.llm.hf import HFBackend

        self.backend = HFBackend(model, device=device)
        super().__init__(f"lm:{self.backend.model_name}:layer{layer}")
        self.layer = layer
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        config: Any = self.backend.model.config
        self._dim = int(config.hidden_size)

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        tokenizer, model = self.backend.tokenizer, self.backend.model
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        side = tokenizer.padding_side
        tokenizer.padding_side = "right"
        # an empty text has no token to pool: it is embedded as the end-of-text token alone
        texts = [text if text.strip() else (tokenizer.eos_token or " ") for text in texts]
        try:
            for begin in range(0, len(texts), self.batch_size):
                batch = tokenizer(texts[begin:begin + self.batch_size], return_tensors="pt", padding=True,
                                  truncation=True, max_length=self.max_tokens).to(self.backend.device)
                with torch.no_grad():
                    states = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[self.layer]
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
                out[begin:begin + len(pooled)] = pooled.float().cpu().numpy()
        finally:
            tokenizer.padding_side = side
        return out
