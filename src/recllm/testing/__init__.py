"""A testing kit for recllm components: contract suites as pytest mixin classes, and small synthetic data.

Every built-in recommender, re-ranker and LLM backend passes these suites; a third-party component that
passes them works wherever recllm expects one. Subclass the contract in a test file, name your component in
one hook, and pytest runs every check::

    # tests/test_my_components.py
    import pytest
    from recllm.testing import (EmbedderContract, LLMBackendContract, RecommenderContract, RerankerContract,
                                film_catalog)

    class TestMyModel(RecommenderContract):
        def make_model(self):
            return MyModel(epochs=2)          # registered with @recllm.models.register

    class TestMyReranker(RerankerContract):
        def make_reranker(self):
            return MyReranker(catalog=film_catalog())

    class TestMyBackend(LLMBackendContract):
        def make_llm(self):
            return MyBackend("my-model")

    class TestMyEmbedder(EmbedderContract):
        def make_embedder(self):
            return MyEmbedder()

Hooks and knobs (see each class): ``make_dataset`` (default ``ring_dataset``, 30 users walking round 20
items), ``make_history``/``make_candidates``/``make_catalog`` (default: a dozen well-known films), class
attributes such as ``RecommenderContract.history_defines_user = False`` for models with learned user
vectors. The component is built once per test class by a class-scoped fixture (``contract_case``,
``contract_reranker``, ``contract_llm``, ``contract_embedder``); override that fixture instead of the hook
when building needs other fixtures, e.g. a session-wide model::

    class TestLikelihood(RerankerContract):
        @pytest.fixture(scope="class")
        @classmethod
        def contract_reranker(cls, llm):
            return LikelihoodReranker(llm, film_catalog())

Importing this package needs pytest (it is test code). ``recllm.testing.strategies`` holds hypothesis
strategies for random datasets and scores; it needs the ``hypothesis`` package (a dev extra), which importing
this package does not.
"""

import pytest

# show the values behind a failed check (pytest rewrites asserts only in modules registered before import)
pytest.register_assert_rewrite("recllm.testing.llm", "recllm.testing.recommender", "recllm.testing.reranker")

from recllm.testing.data import FILMS, RING, film_catalog, ranked, ring_dataset  # noqa: E402
from recllm.testing.llm import EmbedderContract, LLMBackendContract  # noqa: E402
from recllm.testing.recommender import FittedCase, RecommenderContract  # noqa: E402
from recllm.testing.reranker import RerankCase, RerankerContract  # noqa: E402

__all__ = [
    "FILMS",
    "RING",
    "EmbedderContract",
    "FittedCase",
    "LLMBackendContract",
    "RecommenderContract",
    "RerankCase",
    "RerankerContract",
    "film_catalog",
    "ranked",
    "ring_dataset",
]
