"""The one composition path: every front end builds its stages through recllm.pipeline, so a component
registered once is usable by name everywhere, text-reading models get item embeddings from the composition
layer, and an id-tuned adapter's renamed catalog reaches every LLM stage (the service's included)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import recllm
import recllm.registry as registry_module
from fakes import ScriptedLLM
from recllm.data import DataBundle, Dataset, Item, ItemCatalog
from recllm.errors import ConfigError
from recllm.eval.runner import run_evaluation
from recllm.llm import LLM, create_llm
from recllm.llm.base import Completion, Embedder, GenerationRequest
from recllm.llm.factory import EMBEDDERS, LLM_BACKENDS
from recllm.models import MODELS, create_model
from recllm.models.popularity import MostPopular
from recllm.models.tiger import TIGER
from recllm.pipeline import Pipeline, PipelineConfig, RerankerConfig, RetrieverConfig, build_retriever
from recllm.prompts.naming import NAMES_FILE, TRAIN_MARKER
from recllm.registry import Registry, parse_spec
from recllm.serve.service import Service, ServiceConfig
from recllm.serve.storage import Store
from recllm.train.instructions import random_id_names


class ReversePopular(MostPopular):
    """A third-party model: the least popular items first."""

    name = "reverse-pop"

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:  # type: ignore[override]
        return -super().score(users, histories)


@pytest.fixture
def reverse_pop() -> Iterator[None]:
    MODELS.register("reverse-pop", ReversePopular)
    yield
    MODELS.unregister("reverse-pop")


def test_a_model_registered_once_is_usable_in_evaluate_the_pipeline_and_the_service(
        reverse_pop: None, ml100k: DataBundle, tmp_path: Path) -> None:
    assert "reverse-pop" in recllm.model_names()
    report = run_evaluation(ml100k, ["pop", "reverse-pop"], protocol="full", max_users=100)
    ndcg = {row.model: row.metrics["NDCG@10"] for row in report.rows}
    assert ndcg["reverse-pop"] < ndcg["pop"]
    config = PipelineConfig(retriever=RetrieverConfig(model="reverse-pop"))
    pipeline = Pipeline.from_config(config, ml100k).fit()
    served = Service.start(ServiceConfig(pipeline=config.model_copy(update={"llm": "none"})),
                           Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=ml100k)
    mine = pipeline.recommend("196", k=5).items
    assert isinstance(served.retriever, ReversePopular)
    assert tuple(i.item for i in served.recommend("196", k=5).items) == mine
    with pytest.raises(ConfigError, match=r"unknown model 'reverse-pops'; known: .*reverse-pop"):
        create_model("reverse-pops")


def test_plugins_come_from_the_entry_point_group_and_never_replace_a_built_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    points = [EntryPoint("plugin-pop", f"{__name__}:ReversePopular", "recllm.test"),
              EntryPoint("pop", f"{__name__}:ReversePopular", "recllm.test")]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: points if group == "recllm.test" else [])
    registry: Registry[type] = Registry("model", "recllm.test")
    registry.register("pop", MostPopular)
    assert registry.names() == ["pop", "plugin-pop"]
    assert registry.get_component("Plugin-Pop") is ReversePopular and registry["pop"] is MostPopular
    assert registry.validate("plugin-pop", {}) == {}


def test_options_are_validated_against_the_component_config() -> None:
    assert MODELS.validate("sasrec", {"epochs": "3", "dropout": 0.1}) == {"epochs": 3, "dropout": 0.1}
    with pytest.raises(ConfigError, match="model 'sasrec': dropout: Input should be less than 1"):
        MODELS.validate("sasrec", {"dropout": 1.5})
    with pytest.raises(ConfigError, match="model 'tiger': codebook_size: Input should be greater than or equal to 2"):
        create_model("tiger", {"codebook_size": 1})
    from recllm.eval.llm_robustness import paraphrased_template
    from recllm.rerank.factory import RERANKERS

    template = paraphrased_template("rank-verbalizer", 0)  # an object inside an option stays that object
    validated = RERANKERS.validate("verbalizer", {"prompt_options": {"template": template, "evidence": "none"}})
    assert validated["prompt_options"]["template"] is template
    fields = MODELS.options_model("ease").model_fields
    assert fields["l2"].default == 500.0 and any(getattr(m, "gt", None) == 0 for m in fields["l2"].metadata)


def test_llm_spec_options_after_commas_are_typed_and_validated() -> None:
    assert parse_spec("openai:http://127.0.0.1:9/v1,model=m,can_score=true,timeout=5") == \
        ("openai", "http://127.0.0.1:9/v1", {"model": "m", "can_score": True, "timeout": 5})
    backend = create_llm("openai:http://127.0.0.1:9/v1,model=m,can_score=true")  # no request when model is named
    assert backend.can_score and backend.model_name == "m"
    with pytest.raises(ConfigError, match="can_scor: Extra inputs are not permitted"):
        create_llm("openai:http://127.0.0.1:9/v1,model=m,can_scor=true")
    with pytest.raises(ConfigError, match="timeout: Input should be greater than 0"):
        create_llm("openai:http://127.0.0.1:9/v1,model=m,timeout=0")
    with pytest.raises(ConfigError, match="expected key=value after a comma"):
        create_llm("openai:http://127.0.0.1:9/v1,model")


def walk(n_items: int, *, users: int, steps: int) -> DataBundle:
    """Users walking ``steps`` consecutive movies of a ring of ``n_items`` ("Movie k", one genre each year)."""
    user_ids = [f"u{u}" for u in range(users) for _ in range(steps)]
    items = [f"m{(u + step) % n_items}" for u in range(users) for step in range(steps)]
    dataset = Dataset.from_ids(user_ids, items, timestamps=np.tile(np.arange(steps), users), name="walk")
    return DataBundle(dataset, ItemCatalog(Item(f"m{k}", f"Movie {k}", 1990 + k, ("Drama",)) for k in range(n_items)))


class SeenTextsEmbedder(Embedder):
    """A deterministic test embedder that records the texts it embedded."""

    seen: ClassVar[list[str]] = []

    def __init__(self, *, dim: int = 8) -> None:
        super().__init__("seen-texts")
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        SeenTextsEmbedder.seen.extend(texts)
        return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=self._dim) for t in texts]
                        ).astype(np.float32)


def test_a_text_reading_model_gets_the_catalog_embedded_by_the_composition_layer(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path))
    EMBEDDERS.register("seen-texts", SeenTextsEmbedder)
    try:
        n = 12
        bundle = walk(n, users=30, steps=6)
        dataset, catalog = bundle.dataset, bundle.catalog
        with pytest.raises(ConfigError, match="cannot find item texts for dataset 'walk'"):
            TIGER(levels=2, codebook_size=4).fit(dataset)  # without the composition layer there is no text
        model = build_retriever(RetrieverConfig(model="tiger", params={
            "embedder": "seen-texts", "levels": 2, "codebook_size": 4, "hidden": 16, "n_heads": 2, "ff_dim": 32,
            "n_layers": 1, "epochs": 1, "beam_size": 5, "num_threads": 1}), bundle)
        assert isinstance(model, TIGER)
        model.fit(dataset)
        assert sorted(SeenTextsEmbedder.seen) == sorted(catalog.describe(f"m{k}") for k in range(n))
        assert model.semantic_ids_ is not None and model.semantic_ids_.item_ids == tuple(dataset.item_vocab.ids)
    finally:
        EMBEDDERS.unregister("seen-texts")


class ProfileWriterLLM(ScriptedLLM):
    """A backend that writes a supported profile for every even-numbered movie and a failing one otherwise."""

    def __init__(self) -> None:
        super().__init__([])

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for request in requests:
            number = int(re.search(r"Movie (\d+)", str(request.messages)).group(1))  # type: ignore[union-attr]
            text = ("A quiet and moving drama about families, memory and forgiveness." if number % 2 == 0 else
                    "A 1950 film by Stanley Kubrick about families.")
            out.append(Completion(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=12))
        return out


def test_a_text_model_with_profiles_embeds_the_kept_profiles_with_the_facts(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path))
    EMBEDDERS.register("seen-texts", SeenTextsEmbedder)
    LLM_BACKENDS.register("profile-writer", ProfileWriterLLM)
    SeenTextsEmbedder.seen.clear()
    try:
        n = 6
        bundle = walk(n, users=10, steps=4)
        dataset, catalog = bundle.dataset, bundle.catalog
        model = build_retriever(RetrieverConfig(model="text", params={"embedder": "seen-texts",
                                                                      "profiles": "profile-writer"}), bundle)
        texts = dict(zip(dataset.item_vocab.ids, SeenTextsEmbedder.seen, strict=True))
        for k in range(n):
            facts = catalog.describe(f"m{k}")
            if k % 2 == 0:
                assert texts[f"m{k}"] == f"{facts}; profile: A quiet and moving drama about families, memory and " \
                                         "forgiveness."
            else:
                assert texts[f"m{k}"] == facts  # the profile failed its check: the facts alone
        assert model.fit(dataset).recommend("u0", k=3).items
    finally:
        EMBEDDERS.unregister("seen-texts")
        LLM_BACKENDS.unregister("profile-writer")


def test_service_reranks_with_the_renamed_catalog_of_an_id_tuned_adapter_as_recommend_does(
        ml100k: DataBundle, llm: LLM, tmp_path: Path) -> None:
    """The pipeline behind `recllm recommend` and the service's pipeline both name items by the adapter's ids."""
    adapter = tmp_path / "tuned"
    adapter.mkdir()
    (adapter / TRAIN_MARKER).write_text(json.dumps({"instructions": {"config": {"id_facts": False}}}))
    names = random_id_names(ml100k.catalog, seed=3)
    (adapter / NAMES_FILE).write_text(json.dumps(names))
    config = PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm=f"hf:{adapter}",
                            reranker=RerankerConfig(name="likelihood", candidates=6))
    pipeline = Pipeline.from_config(config, ml100k, llm=llm).fit()
    service = Service.start(ServiceConfig(pipeline=config), Store(f"sqlite:///{tmp_path / 's.sqlite'}"),
                            data=ml100k, llm=llm)
    served = service.recommend("196", k=6, rerank=True)
    expected = pipeline.run("196", k=6)
    assert served.reranked and tuple(i.item for i in served.items) == expected.items.items
    assert expected.items.items != expected.candidates.items[:6]  # the re-ranker did re-order
    for stage_catalog in (pipeline.reranker.catalog, service.pipeline.reranker.catalog,  # type: ignore[union-attr]
                          service.pipeline.explainer.catalog):  # type: ignore[union-attr]
        assert stage_catalog["50"].title == names["50"] != ml100k.catalog["50"].title
    plain = Pipeline.from_config(config.model_copy(update={"llm": "hf"}), ml100k, llm=llm)
    assert plain.reranker.catalog["50"].title == ml100k.catalog["50"].title  # type: ignore[union-attr]
    with_options = Pipeline.from_config(config.model_copy(update={"llm": f"hf:{adapter},dtype=fast"}), ml100k, llm=llm)
    assert with_options.reranker.catalog["50"].title == names["50"]  # type: ignore[union-attr]


def test_service_config_holds_the_pipeline_config_and_reads_it_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text('[service]\nmax_k = 20\n[service.pipeline]\nllm = "none"\n'
                    '[service.pipeline.retriever]\nmodel = "itemknn"\nparams = {neighbors = 50}\n'
                    '[service.pipeline.reranker]\nname = "verbalizer"\ncandidates = 10\n')
    config = ServiceConfig.from_toml(path)
    assert config.pipeline.retriever.model == "itemknn" and config.candidates == 10 and config.llm == "none"
    assert config.with_llm("hf:x").pipeline.reranker_llm == "hf:x"
    path.write_text('[service]\nllm = "hf"\n')
    with pytest.raises(ConfigError, match="llm: Extra inputs are not permitted"):
        ServiceConfig.from_toml(path)


def test_recommend_fits_any_registered_retriever_by_name_with_typed_options(ml100k: DataBundle) -> None:
    from test_cli import assert_one_line_error, recllm

    proc = recllm("recommend", "--user", "196", "--k", "5", "--model", "itemknn", "-p", "neighbors=30", "--json")
    assert proc.returncode == 0, proc.stderr
    expected = build_retriever(RetrieverConfig(model="itemknn", params={"neighbors": 30}), ml100k)
    expected.fit(ml100k.dataset)
    assert [r["item"] for r in json.loads(proc.stdout)] == list(expected.recommend("196", k=5).items)
    assert_one_line_error(recllm("recommend", "--user", "196", "--model", "itemknn", "-p", "neighbors=0"),
                          "itemknn", "neighbors", "greater than or equal to 1")
    assert_one_line_error(recllm("recommend", "--user", "196", "--model", "knn"), "unknown model 'knn'")
