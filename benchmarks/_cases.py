"""The re-ranking cases several benchmarks share: MovieLens-100K's standard split, EASE with the benchmark
settings fitted on its training part, and the top 20 of a seeded sample of test users."""

from __future__ import annotations

from pathlib import Path

from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.data.bundle import DataBundle
from recllm.data.splits import Split
from recllm.eval.candidates import Cases, select_users, top_n_cases
from recllm.eval.protocols import queries_for_test
from recllm.eval.runner import make_split
from recllm.pipeline import RetrieverConfig, build_retriever

CONFIG = Path(__file__).resolve().parent / "configs" / "movielens-100k.toml"


def ease_top20(users: int) -> tuple[DataBundle, Split, Cases]:
    """The dataset, its split and ``users`` seeded test users' EASE top 20 (candidates in retriever order)."""
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    params = parse_params(None, CONFIG).get("ease", {})
    retriever = build_retriever(RetrieverConfig(model="ease", params=params), bundle).fit(split.train)
    return bundle, split, top_n_cases(retriever, select_users(queries_for_test(split), users, seed=0), n=20)
