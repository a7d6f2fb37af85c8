"""`recllm evaluate-chat`: the conversation measured with simulated users (``recllm.chat.simulator``).

For a seeded sample of test users of the leave-one-out split, a simulated user whose hidden target is the
user's test item talks to the chat agent (the retriever fitted on everything before the test items, the rule
reader or the model with rules, the user's history as a known user's); success within T turns and the
average turns to success are compared with the same retriever's one-shot hit rate on the same history at the
same list length (and at T times that length, the most items a conversation can show) and with popularity.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recllm.cli import (
    DatasetOpt,
    ModelConfigOpt,
    ParamOpt,
    VerboseOpt,
    _setup_logging,
    app,
    cli_errors,
    console,
    parse_params,
)
from recllm.errors import ConfigError


@app.command("evaluate-chat")
@cli_errors
def evaluate_chat(
    dataset: DatasetOpt = "movielens-100k",
    users: Annotated[int, typer.Option(help="Simulated users (a seeded sample of the test users).")] = 300,
    turns: Annotated[int, typer.Option(help="Turns each simulated user may take.")] = 5,
    model: Annotated[str, typer.Option(help="The chat's retriever (a model name).")] = "ease",
    param: ParamOpt = None,
    config: ModelConfigOpt = None,
    reader: Annotated[str, typer.Option(help="rules, or an LLM spec (hf, hf:NAME, openai:URL) for the model "
                                        "with rules.")] = "rules",
    paraphrase: Annotated[str, typer.Option(help="none (rule-phrased simulator) or an LLM spec that rephrases "
                                            "every simulated message.")] = "none",
    critique: Annotated[bool, typer.Option(help="Critiques from the target's facts; --no-critique: the "
                                           "control that only asks for something else.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for the split and the user sample.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for the JSON report.")] = Path("results"),
    verbose: VerboseOpt = False,
) -> None:
    """Simulated users talk to the chat agent; success within --turns against the one-shot retriever."""
    _setup_logging(verbose)
    if users < 1 or turns < 1:
        raise ConfigError("--users and --turns must be at least 1")
    report = run_chat_evaluation(dataset, users=users, turns=turns, model=model,
                                 params=parse_params(param, config).get(model, {}), reader=reader,
                                 paraphrase=paraphrase, seed=seed, critique=critique)
    table = Table(title=f"{report['dataset']}: {report['users']} simulated users, {turns} turns, "
                        f"{report['k']} items a turn")
    table.add_column("recommender")
    table.add_column("hit / success", justify="right")
    table.add_column("average turns", justify="right")
    chat = report["chat"]
    label = f"chat ({model}, {reader} reader, {paraphrase} phrasing{'' if critique else ', no critiques'})"
    table.add_row(label, f"{chat['success']:.3f}",
                  f"{chat['average_turns']:.2f}")
    for name, value in report["one_shot"].items():
        table.add_row(name, f"{value:.3f}", "")
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    name = f"chat-{report['dataset']}-{reader}-{paraphrase}{'' if critique else '-no-critique'}"
    path = out / (name.replace(":", "_").replace("/", "_") + ".json")
    path.write_text(json.dumps(report, indent=1))
    console.print(f"wrote {path}")


def run_chat_evaluation(dataset: str, *, users: int, turns: int, model: str, params: dict[str, Any],
                        reader: str, paraphrase: str, seed: int, critique: bool = True, k: int = 5,
                        first: int | None = None) -> dict[str, Any]:
    """The simulation and its one-shot baselines as a JSON-ready report; ``first`` talks only to the first N of
    the ``users`` drawn (in user order), so a slow variant runs on a subset of a faster one's users and pairs
    with it. ``outcomes`` keeps each user's success turn (None: a miss) and one-shot hits for paired intervals."""
    from recllm.chat import ChatAgent, ChatRecommender, LLMExtractor, RuleExtractor
    from recllm.chat.simulator import simulate
    from recllm.data.bundle import DataBundle
    from recllm.data.registry import load_dataset
    from recllm.eval.candidates import select_users
    from recllm.eval.protocols import Queries, evaluate_full, queries_for_test
    from recllm.eval.runner import make_split
    from recllm.models.popularity import MostPopular
    from recllm.pipeline import RetrieverConfig, build_retriever

    bundle = load_dataset(dataset)
    split = make_split(bundle, "leave-one-out", seed)
    seen = split.test_history()
    queries = select_users(queries_for_test(split), users, seed=seed)
    if first is not None:
        if first < 1:
            raise ConfigError(f"first must be positive, got {first}")
        queries = Queries(queries.users[:first], queries.histories[:first], queries.targets[:first])
    started = time.perf_counter()
    retriever = build_retriever(RetrieverConfig(model=model, params=params), bundle).fit(seen)
    popular = MostPopular().fit(seen)
    short, long = evaluate_full(retriever, queries, ks=(k,)), evaluate_full(retriever, queries, ks=(k * turns,))
    one_shot = {f"{model} one-shot HR@{k}": short.metrics[f"HR@{k}"],
                f"{model} one-shot HR@{k * turns}": long.metrics[f"HR@{k * turns}"],
                f"popularity HR@{k}": evaluate_full(popular, queries, ks=(k,)).metrics[f"HR@{k}"]}
    vocab = seen.item_vocab
    popularity = {i: float(seen.item_popularity[n]) for n, i in enumerate(vocab.ids)}
    rules = RuleExtractor(bundle.catalog, popularity)
    extractor: Any = rules
    if reader != "rules":
        from recllm.llm import create_llm

        extractor = LLMExtractor(create_llm(reader), bundle.catalog, rules=rules)
    paraphraser = None
    if paraphrase != "none":
        from recllm.llm import create_llm
        from recllm.llm.base import GenerationRequest

        writer = create_llm(paraphrase)

        def paraphraser(message: str) -> str:
            prompt = ("Rewrite this message to a movie recommender in your own casual words, keeping every movie "
                      "title, genre and decade exactly as written. Answer with the rewritten message only.")
            request = GenerationRequest.chat([{"role": "system", "content": prompt},
                                              {"role": "user", "content": message}], max_new_tokens=60)
            return writer.generate([request])[0].text.strip().split("\n")[0]

    recommender = ChatRecommender(DataBundle(seen, bundle.catalog, bundle.rating_range), retriever, popular)
    agent = ChatAgent(recommender, extractor, k=k)
    cases = [(str(split.test.user_vocab.id(int(user))), vocab.lookup_ids(history), vocab.id(int(targets[0])))
             for user, history, targets in zip(queries.users, queries.histories, queries.targets, strict=True)]
    result = simulate(agent, bundle.catalog, cases, turns=turns, paraphrase=paraphraser, critique=critique)
    summary = result.summary()
    return {"dataset": bundle.name, "users": len(cases), "turns": turns, "k": k, "model": model, "reader": reader,
            "paraphrase": paraphrase, "critique": critique, "seed": seed, "chat": summary, "one_shot": one_shot,
            "seconds": time.perf_counter() - started,
            "outcomes": [{"user": d.user, "success_turn": d.success_turn,
                          f"one_shot_hr@{k * turns}": float(hit)}
                         for d, hit in zip(result.dialogues, long.per_user[f"HR@{k * turns}"], strict=True)],
            "examples": [{"user": d.user, "target": bundle.catalog[d.target].label(), "messages": list(d.messages),
                          "success_turn": d.success_turn} for d in result.dialogues[:10]]}
