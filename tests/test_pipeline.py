"""The pipeline end to end on MovieLens-100K with the real default model: retrieve -> re-rank -> explain."""

from recllm.data import DataBundle
from recllm.pipeline import Pipeline, PipelineConfig, RerankerConfig
from recllm.tasks import ExplanationChecker


def test_retrieve_rerank_explain(ml100k: DataBundle):
    config = PipelineConfig(reranker=RerankerConfig(name="likelihood", candidates=8), explain=True)
    pipeline = Pipeline.from_config(config, data=ml100k).fit()
    outcome = pipeline.run("196", k=3)
    assert len(outcome.candidates) == 8 and len(outcome.items) == 3
    assert set(outcome.items.items) <= set(outcome.candidates.items)  # grounded: only retrieved candidates
    assert outcome.rerank_diagnostics.outside_result == 0
    history = set(pipeline.retriever.item_vocab.lookup_ids(pipeline.retriever.history_of(
        pipeline.retriever.user_vocab.index("196"))))
    assert not history & set(outcome.items.items)
    checker = ExplanationChecker(ml100k.catalog)
    for item, text, detail in zip(outcome.items.items, outcome.items.explanations, outcome.explanation_details,
                                  strict=True):
        assert text and detail.text == text
        assert set(detail.cited) <= history | {item}  # cites only the user's history and the item itself
        assert detail.grounded or detail.fallback_used
        _, cited = checker.check(text, sorted(history), item)  # the text shown cites nothing else either
        assert set(cited) <= history | {item}


def test_without_llm_stages_the_pipeline_is_the_retriever(ml100k: DataBundle):
    pipeline = Pipeline.from_config(PipelineConfig(), data=ml100k).fit()
    assert pipeline.recommend("196", k=5) == pipeline.retriever.recommend("196", k=5)
