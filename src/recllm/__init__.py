"""recllm: LLM-assisted recommendation with classic recommenders as retrievers and baselines.

The main entry points are importable from here (each loads its module on first use, so ``import recllm``
stays light)::

    import recllm
    bundle = recllm.load_dataset("movielens-100k")
    pipeline = recllm.Pipeline.from_config(recllm.PipelineConfig(), data=bundle).fit()
    print(pipeline.recommend("196", k=5))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recllm._version import __version__
from recllm.errors import ConfigError, DataError, RecllmError

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from recllm.data import DataBundle, Dataset, ItemCatalog, ItemList, load_dataset
    from recllm.data.splits import leave_one_out
    from recllm.eval import evaluate_full, queries_for_test, run_evaluation
    from recllm.eval.runner import make_split
    from recllm.llm import create_embedder, create_llm
    from recllm.llm.factory import EMBEDDERS, LLM_BACKENDS
    from recllm.models import MODELS, Recommender, create_model, model_names
    from recllm.pipeline import Pipeline, PipelineConfig, RerankerConfig, RetrieverConfig, build_retriever
    from recllm.registry import Registry
    from recllm.rerank import RERANKERS, create_reranker
    from recllm.serve.app import create_app
    from recllm.serve.service import Service, ServiceConfig

_WHERE = {
    # data
    "DataBundle": "recllm.data", "Dataset": "recllm.data", "ItemCatalog": "recllm.data", "ItemList": "recllm.data",
    "load_dataset": "recllm.data", "leave_one_out": "recllm.data.splits", "make_split": "recllm.eval.runner",
    # models
    "Recommender": "recllm.models", "create_model": "recllm.models", "model_names": "recllm.models",
    "MODELS": "recllm.models",
    # the composition path
    "Pipeline": "recllm.pipeline", "PipelineConfig": "recllm.pipeline", "RetrieverConfig": "recllm.pipeline",
    "RerankerConfig": "recllm.pipeline", "build_retriever": "recllm.pipeline",
    # language models and re-rankers
    "create_llm": "recllm.llm", "create_embedder": "recllm.llm", "LLM_BACKENDS": "recllm.llm.factory",
    "EMBEDDERS": "recllm.llm.factory", "create_reranker": "recllm.rerank", "RERANKERS": "recllm.rerank",
    "Registry": "recllm.registry",
    # evaluation
    "evaluate_full": "recllm.eval", "queries_for_test": "recllm.eval", "run_evaluation": "recllm.eval",
    # the service
    "create_app": "recllm.serve.app", "Service": "recllm.serve.service", "ServiceConfig": "recllm.serve.service",
}

__all__ = [
    "EMBEDDERS",
    "LLM_BACKENDS",
    "MODELS",
    "RERANKERS",
    "ConfigError",
    "DataBundle",
    "DataError",
    "Dataset",
    "ItemCatalog",
    "ItemList",
    "Pipeline",
    "PipelineConfig",
    "RecllmError",
    "Recommender",
    "Registry",
    "RerankerConfig",
    "RetrieverConfig",
    "Service",
    "ServiceConfig",
    "__version__",
    "build_retriever",
    "create_app",
    "create_embedder",
    "create_llm",
    "create_model",
    "create_reranker",
    "evaluate_full",
    "leave_one_out",
    "load_dataset",
    "make_split",
    "model_names",
    "queries_for_test",
    "run_evaluation",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'recllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
