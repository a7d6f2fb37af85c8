"""Creating recommenders by name: the built-in models, registered lazily so that listing them loads no torch."""

from __future__ import annotations

from typing import Any

from recllm.models.base import MODELS, Recommender

_BUILT_IN = {
    "pop": "recllm.models.popularity:MostPopular",
    "itemknn": "recllm.models.itemknn:ItemKNN",
    "ease": "recllm.models.ease:EASE",
    "als": "recllm.models.matrix_factorization:ALS",
    "bpr": "recllm.models.matrix_factorization:BPR",
    "sasrec": "recllm.models.sasrec:SASRec",
    "tiger": "recllm.models.tiger:TIGER",
    "text": "recllm.models.text_similarity:TextSimilarity",
}
for _name, _path in _BUILT_IN.items():
    if _name not in MODELS:
        MODELS.register(_name, _path)


def model_names() -> list[str]:
    """Every model ``create_model`` accepts (built-ins, then plugins)."""
    return MODELS.names()


def create_model(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """A fresh recommender of the registered ``name`` with ``params`` validated against its config."""
    return MODELS.get_component(name).from_config(params)
