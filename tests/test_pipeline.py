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


def test_a_switched_on_mitigation_reorders_the_final_list(ml100k: DataBundle, tmp_path):
    import numpy as np
    import pydantic
    import pytest

    from recllm.pipeline import MitigationConfig
    from recllm.rerank.mitigation import PopularityBins

    plain = Pipeline.from_config(PipelineConfig(), data=ml100k).fit()
    quota = Pipeline.from_config(PipelineConfig(mitigation=MitigationConfig(name="tail-quota", share=0.5)),
                                 data=ml100k).fit()
    counts = np.bincount(ml100k.dataset.items, minlength=ml100k.dataset.n_items)
    bins = PopularityBins(dict(zip(ml100k.dataset.item_vocab.ids, counts.tolist(), strict=True)))
    for user in ("196", "22", "305"):
        before, after = plain.recommend(user, k=10), quota.recommend(user, k=10)
        tail = [bins.of(i) > 0 for i in after.items]
        assert all(sum(tail[:j]) >= int(0.5 * j) for j in range(1, 11))  # every prefix meets the quota
        assert set(after.items) <= set(plain.recommend(user, k=100).items)  # drawn from the retriever's top pool
        assert sum(bins.of(i) > 0 for i in before.items) <= sum(tail)
    calibrated = Pipeline.from_config(PipelineConfig(mitigation=MitigationConfig(name="popularity-calibration",
                                                                                 weight=0.9)), data=ml100k).fit()
    lists = [calibrated.recommend(u, k=10).items for u in ("196", "22", "305")]
    assert lists != [plain.recommend(u, k=10).items for u in ("196", "22", "305")]
    penalised = Pipeline.from_config(PipelineConfig(mitigation=MitigationConfig(name="popularity-penalty",
                                                                                weight=0.6)), data=ml100k).fit()
    for user in ("196", "22", "305"):
        after = penalised.recommend(user, k=10).items
        assert set(after) <= set(plain.recommend(user, k=100).items)
        assert np.mean([penalised.bins.percentile(i) for i in after]) < np.mean(
            [penalised.bins.percentile(i) for i in plain.recommend(user, k=10).items])
    config = tmp_path / "p.toml"
    config.write_text('[pipeline]\nmitigation = {name = "tail-quota", pool = 50}\n')
    assert PipelineConfig.from_toml(config).mitigation == MitigationConfig(name="tail-quota", pool=50)
    with pytest.raises(pydantic.ValidationError, match="popularity-calibration"):
        MitigationConfig(name="fair")  # type: ignore[arg-type]
