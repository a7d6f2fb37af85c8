"""`recllm train ...`: LoRA tuning of a causal LM on instruction data, semantic ids, and TIGER.

Every trainer learns from the training part of the leave-one-out split only, so a model trained here can be
evaluated on that split's test interactions (``recllm evaluate``) without leakage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recllm.cli import DatasetOpt, VerboseOpt, _setup_logging, cli_errors, console, parse_params
from recllm.errors import ConfigError

train_app = typer.Typer(no_args_is_help=True, help="Train language models and generative retrievers on "
                                                   "recommendation data.")


def _split_options(pairs: list[str] | None, what: str) -> dict[str, Any]:
    """KEY=VALUE pairs (values read as JSON when they parse) for one trainer."""
    return parse_params([f"{what}.{p}" for p in (pairs or [])], None).get(what, {})


@train_app.command("lm")
@cli_errors
def train_lm(
    out: Annotated[Path, typer.Option(help="Folder for the adapter, its JSON record and checkpoints.")],
    dataset: DatasetOpt = "movielens-100k",
    tasks: Annotated[str, typer.Option(help="Comma-separated instruction tasks: next, rank, rate, explain, "
                                       "yesno.")] = "next,rank,rate",
    naming: Annotated[str, typer.Option(help="How items are named: title, random-id or semantic.")] = "title",
    semantic_ids: Annotated[Path | None, typer.Option("--semantic-ids", help="Folder from `recllm train "
                                                      "semantic-ids` (with --naming semantic).")] = None,
    max_examples: Annotated[int | None, typer.Option(help="At most this many examples per task (seeded "
                                                     "sample; default all).")] = None,
    llm: Annotated[str, typer.Option(help="Base model: hf (the pinned default), hf:FOLDER, or an earlier "
                                     "adapter folder as hf:OUT.")] = "hf",
    epochs: Annotated[int, typer.Option(help="Passes over the examples.")] = 1,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step (default 8 on a CPU, 32 on a GPU).")]
    = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up and decay).")] = 2e-4,
    rank: Annotated[int, typer.Option("--r", help="LoRA rank.")] = 8,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (resumable).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")]
    = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier run in --out.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the examples, LoRA initialisation and data order.")] = 0,
    negatives_from: Annotated[str | None, typer.Option(
        "--negatives-from", help="Hard negatives for the rank task (LlamaRec): this retriever's top items for the "
        "history before each target, the retriever fitted on the training part only (e.g. sasrec; its "
        "hyper-parameters as retriever.KEY options). Default: random catalog items.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="Further KEY=VALUE: instruction "
                                                     "fields as data.KEY (e.g. data.n_candidates=20), LoRA "
                                                     "fields as lora.KEY (e.g. lora.alpha=32), the "
                                                     "--negatives-from retriever's as retriever.KEY.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """LoRA-tune a causal LM on P5-style instruction data (TALLRec with --tasks yesno) from the training
    interactions; the adapter then serves every re-ranker and task via --llm hf:OUT."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.eval.runner import make_split
    from recllm.train.instructions import build_instructions
    from recllm.train.lora import train_lora

    extra = parse_params(option, None)
    unknown = set(extra) - {"data", "lora", "retriever"}
    if unknown:
        raise ConfigError(f"--option '{sorted(unknown)[0]}.…': use data.KEY, lora.KEY or retriever.KEY")
    if "retriever" in extra and negatives_from is None:
        raise ConfigError("--option retriever.KEY=VALUE sets the --negatives-from retriever; name it with "
                          "--negatives-from MODEL")
    names = None
    if semantic_ids is not None:
        from recllm.train.semantic_ids import SemanticIds

        names = SemanticIds.load(semantic_ids)
    elif naming == "semantic":
        raise ConfigError("--naming semantic needs --semantic-ids FOLDER (from `recllm train semantic-ids`)")
    if llm != "hf" and not llm.startswith("hf:"):
        raise ConfigError(f"--llm {llm}: LoRA tuning needs a transformers model (hf or hf:FOLDER)")
    spec = llm.removeprefix("hf:") or None if llm != "hf" else None
    with console.status(f"loading {dataset} and building instructions"):
        bundle = load_dataset(dataset)
        split = make_split(bundle, seed=seed)
        hard: dict[str, Any] = {}
        if negatives_from is not None:
            from recllm.pipeline import RetrieverConfig, build_retriever

            retriever = build_retriever(RetrieverConfig(model=negatives_from, params=extra.get("retriever", {})),
                                        bundle)
            hard = {"negatives": "retriever", "retriever": retriever.fit(split.train, valid=split.valid)}
        examples = build_instructions(split, bundle.catalog, tasks=tuple(t.strip() for t in tasks.split(",")
                                                                          if t.strip()),
                                      naming=naming, seed=seed, max_examples_per_task=max_examples,
                                      semantic_ids=names, **extra.get("data", {}), **hard)
    console.print(f"{len(examples):,} examples from the training part of {bundle.name}: "
                  + ", ".join(f"{task} {n:,}" for task, n in examples.counts.items()))
    lora_options = {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "r": rank,
                    "save_every": save_every, "seed": seed, **extra.get("lora", {})}
    result = train_lora(examples, out, model=spec, resume=resume, overwrite=overwrite, progress=True,
                        **lora_options)
    table = Table(title=f"LoRA on {result.base_model or 'the default model'} ({result.device}, {result.precision})",
                  title_justify="left", show_header=False)
    losses = result.losses
    rows = [("steps", f"{result.steps:,}" + (f" (resumed from {result.resumed_from})" if result.resumed_from
                                               else "")),
            ("examples", f"{result.n_train:,} train, {result.n_eval:,} held out, {result.n_dropped:,} too long"),
            ("trainable parameters", f"{result.trainable_params:,} of {result.total_params:,}"),
            ("train loss", f"{losses[0]:.3f} (first step) -> {losses[-1]:.3f} (last step)" if losses else "-"),
            ("held-out loss", " -> ".join(f"{e.loss:.3f}" for e in result.evals) or "-"),
            ("time", f"{result.seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s")]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"adapter written to {out}; use it with --llm hf:{out} (e.g. recllm evaluate --protocol "
                  f"rerank-top20 --models sasrec --rerank verbalizer --llm hf:{out})")


@train_app.command("semantic-ids")
@cli_errors
def train_semantic_ids(
    out: Annotated[Path, typer.Option(help="Folder for the codes (safetensors) and their JSON.")],
    dataset: DatasetOpt = "movielens-100k",
    method: Annotated[str, typer.Option(help="rqkmeans (residual k-means) or rqvae (residual-quantised VAE).")]
    = "rqkmeans",
    levels: Annotated[int, typer.Option(help="Semantic levels (a collision-breaking level is added).")] = 3,
    codebook_size: Annotated[int, typer.Option(help="Codes per level.")] = 256,
    seed: Annotated[int, typer.Option()] = 0,
    embedder: Annotated[str, typer.Option(help="Text embedder for the item texts (st: the pinned MiniLM).")]
    = "st",
    verbose: VerboseOpt = False,
) -> None:
    """Semantic ids of every item from its catalog text: codebook use per level and the collision rate."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.train.semantic_ids import build_semantic_ids

    with console.status(f"embedding the items of {dataset} and quantising ({method})"):
        bundle = load_dataset(dataset)
        ids = build_semantic_ids(bundle.catalog, list(bundle.dataset.item_vocab.ids), method=method,
                                 embedder=embedder, levels=levels, codebook_size=codebook_size, seed=seed)
    ids.save(out)
    _print_id_stats(ids.stats(), f"{method} semantic ids of {bundle.name}")
    console.print(f"wrote {out}; use with --naming semantic --semantic-ids {out}, or tiger "
                  f"semantic_ids_dir={out}")


def _print_id_stats(stats: dict[str, Any], title: str) -> None:
    table = Table(title=f"{title}: {stats['n_items']:,} items", title_justify="left")
    for column in ("level", "codes used", "usage", "perplexity"):
        table.add_column(column, justify="right")
    for level in stats["levels"]:
        table.add_row(str(level["level"]), str(level["used"]), f"{level['usage']:.1%}", f"{level['perplexity']:.1f}")
    console.print(table)
    console.print(f"collision rate {stats['collision_rate']:.2%} (items sharing their semantic tuple, told apart by "
                  f"the extra level; deepest collision {stats['max_collision_depth']})")


@train_app.command("tiger")
@cli_errors
def train_tiger(
    out: Annotated[Path, typer.Option(help="Folder to save the model in (safetensors + JSON).")],
    dataset: DatasetOpt = "movielens-100k",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE TIGER hyper-parameter "
                                                    "(e.g. epochs=50, beam_size=30, ids_method=rqvae).")] = None,
    k: Annotated[int, typer.Option(help="Cut-off of the reported HR and NDCG.")] = 10,
    verbose: VerboseOpt = False,
) -> None:
    """Train TIGER on the leave-one-out training part (validation for early stopping), report HR@K and
    NDCG@K under the full protocol on test, the semantic-id statistics and invalid generations, and save it."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.eval.protocols import evaluate_full, queries_for_test
    from recllm.eval.runner import make_split
    from recllm.models.tiger import TIGER
    from recllm.pipeline import RetrieverConfig, build_retriever

    options = _split_options(param, "tiger")
    TIGER.from_config(options)  # a bad option fails before the data is loaded
    with console.status(f"loading {dataset} and embedding its item texts"):
        bundle = load_dataset(dataset)
        split = make_split(bundle)
        model = build_retriever(RetrieverConfig(model="tiger", params=options), bundle)
    assert isinstance(model, TIGER)
    with console.status(f"training tiger on {bundle.name} (semantic ids, then the transformer)"):
        model.fit(split.train, valid=split.valid if len(split.valid) else None)
    assert model.semantic_ids_ is not None
    _print_id_stats(model.semantic_ids_.stats(), f"{model.ids_method} semantic ids")
    with console.status("evaluating (full protocol: every item ranked, history excluded)"):
        result = evaluate_full(model, queries_for_test(split), ks=(k,), popularity=split.train.item_popularity)
    history = model.history_
    console.print(f"{bundle.name}, leave-one-out, full protocol, {result.n_users:,} test users: "
                  f"HR@{k} {result.metrics[f'HR@{k}']:.4f}, NDCG@{k} {result.metrics[f'NDCG@{k}']:.4f}; "
                  f"{len(history)} epochs (best {model.best_epoch_}), "
                  f"invalid generations {model.invalid_generations_}")
    model.save(out)
    model.save_semantic_ids(out / "semantic-ids")
    (out / "evaluation.json").write_text(json.dumps({"dataset": bundle.name, "split": split.kind,
                                                     "protocol": "full", "metrics": result.metrics,
                                                     "n_users": result.n_users, "history": history}, indent=1))
    console.print(f"saved tiger to {out} (semantic ids in {out / 'semantic-ids'})")


@train_app.command("distill")
@cli_errors
def train_distill(
    out: Annotated[Path, typer.Option(help="Folder for the student (student.safetensors + student.json).")],
    dataset: DatasetOpt = "movielens-100k",
    model: Annotated[str, typer.Option(help="Retriever whose candidates the teacher judges.")] = "sasrec",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE retriever hyper-parameter."
                                                    )] = None,
    teacher: Annotated[str, typer.Option(help="The re-ranker to imitate (a scoring one: verbalizer or "
                                         "likelihood).")] = "verbalizer",
    llm: Annotated[str, typer.Option(help="The teacher's language model spec.")] = "hf",
    users: Annotated[int, typer.Option(help="Validation-time lists the teacher judges.")] = 400,
    candidates: Annotated[int, typer.Option(help="Candidates per list.")] = 20,
    embedder: Annotated[str, typer.Option(help="Item-text vectors the student reads (lm: the LLM's hidden "
                                          "states; st: the sentence embedder).")] = "lm",
    seed: Annotated[int, typer.Option(help="Seed of the user sample and the held-out lists.")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Distil an LLM re-ranker into a student that re-ranks with no language model at request time: the teacher
    judges the retriever's top candidates for validation-time users (no test interaction is seen), a ridge
    regression learns to imitate it from precomputed item vectors. Use it as re-ranker `distilled` with
    option path=OUT."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.eval.runner import make_split
    from recllm.llm.cache import CachedLLM
    from recllm.pipeline import RetrieverConfig, build_llm, build_reranker, build_retriever, llm_catalog
    from recllm.train.distill import distill

    options = _split_options(param, model)
    with console.status(f"loading {dataset} and fitting {model} on its training part"):
        bundle = load_dataset(dataset)
        split = make_split(bundle, seed=seed)
        retriever = build_retriever(RetrieverConfig(model=model, params=options), bundle)
        retriever.fit(split.train, valid=split.valid)
    judge_with = build_reranker(teacher, CachedLLM(build_llm(llm)), llm_catalog(llm, bundle.catalog))
    with console.status(f"the {teacher} teacher judges {users} lists of {candidates}"):
        student, report, _ = distill(judge_with, retriever, split, bundle.catalog, users=users, n=candidates,
                                     embedder=embedder, seed=seed,
                                     info={"dataset": bundle.name, "retriever": model, "llm": llm})
    student.save(out)
    table = Table(title=f"student of {teacher} ({llm}) on {bundle.name}", title_justify="left", show_header=False)
    rows = [("lists judged", f"{report.lists}"),
            ("ridge strength", f"{report.l2:g} (held-out Spearman with the teacher {report.agreement[report.l2]:.3f})"),
            ("teacher blend", f"weight {report.teacher_blend.weight:.1f}, validation NDCG@10 "
                              f"{report.teacher_blend.value:.4f} (retriever alone "
                              f"{report.teacher_blend.values[0.0]:.4f})"),
            ("student blend", f"weight {report.student_blend.weight:.1f}, validation NDCG@10 "
                              f"{report.student_blend.value:.4f}"),
            ("feature weights", ", ".join(f"{k} {v:+.3f}" for k, v in report.feature_weights.items()))]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"student written to {out}; use it with reranker name 'distilled' and option path={out}")
