"""The `recllm` command: demo, evaluate, data and split utilities, fit and recommend."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from recllm.config import load_toml
from recllm.errors import ConfigError, RecllmError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="recllm: LLM-assisted recommendation.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and inspect datasets.")
split_app = typer.Typer(no_args_is_help=True, help="Make and export train/validation/test splits.")
app.add_typer(data_app, name="data")
app.add_typer(split_app, name="split")
batch_app = typer.Typer(no_args_is_help=True, help="Work over every user at once (optionally on Ray).")
app.add_typer(batch_app, name="batch")
# wide enough for the metric tables when output goes to a file or a pipe (rich assumes 80 columns there)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
F = TypeVar("F", bound=Callable[..., Any])

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="movielens-100k, movielens-1m, "
                                         "grouplens-100k:DIR, grouplens-1m:DIR or files:CONFIG.toml")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="MODEL.KEY=VALUE hyper-parameter.")]
RayOpt = Annotated[str | None, typer.Option(help="Run the shards on Ray: local (a Ray on loopback for this run), "
                                            "auto (the running cluster, else local) or HOST:PORT.")]
RayWorkersOpt = Annotated[int, typer.Option(min=1, help="CPUs of a local Ray.")]
ModelConfigOpt = Annotated[Path | None, typer.Option(help="TOML with \\[models.NAME] tables.")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)], force=True)


def cli_errors(func: F) -> F:
    """Turn recllm's own errors (and missing files) into a one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RecllmError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            err_console.print(f"[bold red]error:[/] {exc.strerror}: {exc.filename}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_params(pairs: list[str] | None, config: Path | None) -> dict[str, dict[str, Any]]:
    """Model and re-ranker options from a TOML file (``[models.NAME]`` and ``[rerankers.NAME]`` tables) and
    ``NAME.key=value`` pairs (values read as JSON when they parse, else as strings)."""
    params: dict[str, dict[str, Any]] = {}
    if config is not None:
        raw = load_toml(config)
        extra = set(raw) - {"models", "rerankers"}
        if extra:
            raise ConfigError(f"{config}: unknown top-level key '{sorted(extra)[0]}' "
                              f"(expected [models.NAME] or [rerankers.NAME])")
        for section in ("models", "rerankers"):
            for name, table in raw.get(section, {}).items():
                if not isinstance(table, dict):
                    raise ConfigError(f"{config}: {section}.{name} must be a table")
                params[name] = dict(table)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        model, dot, field = key.partition(".")
        if not sep or not dot or not model or not field:
            raise ConfigError(f"--param '{pair}': expected NAME.KEY=VALUE, e.g. sasrec.epochs=20 or "
                              f"likelihood.calibrate=false")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        params.setdefault(model, {})[field] = parsed
    return params


@app.command()
@cli_errors
def demo(
    dataset: DatasetOpt = "movielens-100k",
    users: Annotated[int, typer.Option(help="How many users to show.")] = 3,
    k: Annotated[int, typer.Option(help="Recommendations per user.")] = 10,
    verbose: VerboseOpt = False,
) -> None:
    """Train the default pipeline and show recommendations for a few users, then a small evaluation."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.eval.runner import make_split, run_evaluation
    from recllm.pipeline import Pipeline, PipelineConfig

    with console.status(f"loading {dataset} (fetched and verified on first use)"):
        bundle = load_dataset(dataset)
    console.print(f"[bold]{bundle.name}[/]: {bundle.dataset.n_users:,} users, {bundle.dataset.n_items:,} items, "
                  f"{len(bundle.dataset):,} interactions")
    config = PipelineConfig(dataset=dataset)
    pipeline = Pipeline.from_config(config, data=bundle)
    with console.status(f"fitting the {config.retriever.model} retriever on all interactions"):
        pipeline.fit()
    catalog, ds = bundle.catalog, bundle.dataset
    for user_index in ds.active_users[:users]:
        user = ds.user_vocab.id(user_index)
        recent = ds.item_vocab.lookup_ids(ds.sequence(user_index)[-5:][::-1])
        table = Table(title=f"user {user}", title_justify="left", show_lines=False)
        table.add_column("recent history (newest first)")
        table.add_column(f"top-{k} recommendations")
        table.add_column("score", justify="right")
        recs = pipeline.recommend(user, k=k)
        for row in range(max(len(recent), len(recs))):
            hist = catalog.title(recent[row]) if row < len(recent) else ""
            rec = recs.items[row] if row < len(recs) else None
            table.add_row(hist, catalog.title(rec) if rec else "", f"{recs.scores[row]:.3f}" if rec else "")
        console.print(table)
    models = ["pop", "itemknn", "ease", "als"]
    with console.status("evaluating " + ", ".join(models) + " (leave-one-out, full ranking)"):
        report = run_evaluation(bundle, models, protocol="full", ks=(10,), split=make_split(bundle))
    _print_report(report)
    console.print("Full benchmark (adds BPR and SASRec): recllm evaluate --dataset movielens-1m "
                  "--models pop,itemknn,ease,als,bpr,sasrec --protocol full")


def _print_report(report: Any) -> None:
    names = report.metric_names()
    table = Table(title=f"{report.dataset}: protocol {report.protocol}, split {report.split}, "
                        f"{report.rows[0].n_users if report.rows else 0} test users", title_justify="left")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("rec s/1k users", justify="right")
    for row in report.rows:
        table.add_row(row.model, *(f"{row.metrics[n]:.4f}" if n in row.metrics and row.metrics[n] < 10
                                   else f"{row.metrics.get(n, float('nan')):.1f}" for n in names),
                      f"{row.fit_seconds:.1f}", f"{row.recommend_seconds_per_1k_users:.2f}")
    console.print(table)
    llm_rows = [row for row in report.rows if row.diagnostics]
    if llm_rows:
        diag = Table(title="LLM diagnostics", title_justify="left")
        for column in ("row", "model", "format err", "halluc. raw", "halluc. grounded", "dupl.", "p50 s", "p95 s",
                       "tok/s"):
            diag.add_column(column, justify="left" if column in ("row", "model") else "right")
        for row in llm_rows:
            d = row.diagnostics
            diag.add_row(row.model, ", ".join(d["models"]), f"{d['format_error_rate']:.1%}",
                         f"{d['hallucination_rate']:.1%}", f"{d['grounded_hallucination_rate']:.1%}",
                         f"{d['duplicate_rate']:.1%}", f"{d['latency_p50_s']:.2f}", f"{d['latency_p95_s']:.2f}",
                         f"{d['processed_tokens_per_second']:.0f}")
        console.print(diag)
    for note in report.notes:
        console.print(f"note: {note}")


@app.command()
@cli_errors
def evaluate(
    dataset: DatasetOpt = "movielens-100k",
    models: Annotated[str, typer.Option(help="Comma-separated: pop,itemknn,ease,als,bpr,sasrec "
                                        "(rating protocol: global-mean,bias).")] = "pop,itemknn,ease,als,bpr",
    protocol: Annotated[str, typer.Option(help="full, sampled-N (e.g. sampled-20), rerank-topN (e.g. rerank-top20) "
                                          "or rating.")] = "full",
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs (repeat for several).")] = None,
    split: Annotated[str, typer.Option(help="leave-one-out, temporal or cold-items.")] = "leave-one-out",
    seed: Annotated[int, typer.Option(help="Seed for splits and sampled negatives.")] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="MODEL.KEY=VALUE hyper-parameter.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML with \\[models.NAME] / \\[rerankers.NAME] tables.")] = None,
    rerank: Annotated[str, typer.Option(help="Comma-separated LLM re-rankers (likelihood,verbalizer,listwise); "
                                        "with sampled-N or rerank-topN.")] = "",
    llm: Annotated[str, typer.Option(help="LLM for re-rankers: hf, hf:PATH or openai:URL.")] = "hf",
    users: Annotated[int | None, typer.Option(help="Evaluate a seeded sample of this many test users.")] = None,
    permutations: Annotated[int, typer.Option(help="Shuffled candidate orders per user, Borda-aggregated "
                                              "(1: none).")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the JSON and Markdown report.")] = Path("results"),
    ray: Annotated[str | None, typer.Option(help="Shard the full ranking and the re-ranking over Ray: local (a Ray "
                                            "on loopback for this run), auto (the running cluster, else local) "
                                            "or HOST:PORT.")] = None,
    workers: RayWorkersOpt = 2,
    shards: Annotated[int | None, typer.Option(min=1, help="Shards of users (default: 4 per Ray CPU; without "
                                               "--ray, run one after another here).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fit models on one split and evaluate them under one protocol; print a table, write JSON and Markdown.

    With --rerank, LLM re-rankers are evaluated on the same candidates as the models (sampled-N) or over
    each model's top N (rerank-topN), and the LLM diagnostics are reported beside them. With --ray each
    worker loads the LLM itself and re-ranks its shard of users; the figures equal those of a run without."""
    _setup_logging(verbose)
    from contextlib import nullcontext

    from recllm.data.registry import load_dataset
    from recllm.distributed import check_address, ray_session
    from recllm.eval.runner import make_split, parse_protocol, run_evaluation

    parse_protocol(protocol)
    if ray is not None:
        check_address(ray)
    names = [m.strip() for m in models.split(",") if m.strip()]
    rerankers = [r.strip() for r in rerank.split(",") if r.strip()]
    if not names and not rerankers:
        raise ConfigError("--models is empty")
    params = parse_params(param, config)
    ks = tuple(sorted(set(k or [10])))
    if any(x < 1 for x in ks):
        raise ConfigError(f"--k must be at least 1, got {min(ks)}")
    with console.status(f"loading {dataset}"):
        bundle = load_dataset(dataset)
        the_split = make_split(bundle, split, seed)
    status = console.status("starting")
    with status, (ray_session(ray, workers=workers) if ray is not None else nullcontext()) as session:
        report = run_evaluation(bundle, names, protocol=protocol, ks=ks, seed=seed, split=the_split,
                                params=params, on_model=lambda m, stage: status.update(f"{m}: {stage}"),
                                rerankers=rerankers, llm=llm, max_users=users, permutations=permutations,
                                ray=session, shards=shards)
    _print_report(report)
    stem = f"{bundle.name.replace(':', '_').replace('/', '_')}-{protocol}-{split}" + ("-rerank" if rerankers else "")
    json_path, md_path = report.write(out, stem)
    console.print(f"wrote {json_path} and {md_path}")


@data_app.command("fetch")
@cli_errors
def data_fetch(name: Annotated[str, typer.Argument(help="movielens-100k or movielens-1m")],
               verbose: VerboseOpt = False) -> None:
    """Fetch, verify and cache a pinned dataset."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset

    bundle = load_dataset(name)
    console.print(f"{bundle.name}: {len(bundle.dataset):,} interactions ready")


@data_app.command("info")
@cli_errors
def data_info(dataset: DatasetOpt = "movielens-100k", verbose: VerboseOpt = False) -> None:
    """Sizes, density, the rating and time ranges of a dataset, and the rating range its loader enforced."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset

    bundle = load_dataset(dataset)
    ds = bundle.dataset
    table = Table(title=bundle.name, show_header=False, title_justify="left")
    rows = [("users", f"{ds.n_users:,}"), ("items", f"{ds.n_items:,}"), ("interactions", f"{len(ds):,}"),
            ("density", f"{len(ds) / (ds.n_users * ds.n_items):.4%}"), ("catalog items", f"{len(bundle.catalog):,}")]
    if ds.ratings is not None:
        rows.append(("ratings", f"{ds.ratings.min():g} .. {ds.ratings.max():g}, mean {ds.ratings.mean():.3f}"))
    allowed = bundle.rating_range
    rows.append(("rating range", "none" if allowed is None else f"{allowed[0]:g} .. {allowed[1]:g} (enforced)"))
    if ds.timestamps is not None:
        from datetime import UTC, datetime

        lo, hi = (datetime.fromtimestamp(int(t), UTC).date() for t in (ds.timestamps.min(), ds.timestamps.max()))
        rows.append(("time span", f"{lo} .. {hi}"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@split_app.command("export")
@cli_errors
def split_export(
    dataset: DatasetOpt = "movielens-100k",
    kind: Annotated[str, typer.Option(help="leave-one-out, temporal or cold-items.")] = "leave-one-out",
    seed: Annotated[int, typer.Option()] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("split"),
    verbose: VerboseOpt = False,
) -> None:
    """Write a split as TSV files and RecBole benchmark files, so other toolkits use the exact same split."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.data.splits import export_split
    from recllm.eval.runner import make_split

    bundle = load_dataset(dataset)
    written = export_split(make_split(bundle, kind, seed), out, name=bundle.name.replace(":", "_"))
    console.print(f"wrote {len(written)} files under {out}")


def _fit_on_all(dataset: str, model: str, param: list[str] | None) -> Any:
    """``model`` with its ``KEY=VALUE`` params fitted on every interaction of ``dataset`` (a misspelt name or
    option fails before the data is loaded)."""
    from recllm.data.registry import load_dataset
    from recllm.models.registry import create_model
    from recllm.pipeline import RetrieverConfig, build_retriever

    params = parse_params([f"{model}.{p}" for p in (param or [])], None).get(model, {})
    create_model(model, params)
    bundle = load_dataset(dataset)
    recommender = build_retriever(RetrieverConfig(model=model, params=params), bundle)
    with console.status(f"fitting {model} on {bundle.name}"):
        recommender.fit(bundle.dataset)
    return recommender


@batch_app.command("recommend")
@cli_errors
def batch_recommend_command(
    dataset: DatasetOpt = "movielens-100k",
    model: Annotated[str, typer.Option(help="A registered model (ease, itemknn, als, bpr, sasrec, ...).")] = "ease",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE hyper-parameter.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Items per user.")] = 10,
    out: Annotated[Path, typer.Option(help="Parquet file: one row per user and rank (user, rank, item, "
                                      "score).")] = Path("recommendations.parquet"),
    ray: RayOpt = None,
    workers: RayWorkersOpt = 2,
    shards: Annotated[int | None, typer.Option(min=1, help="Shards of users (default: 4 per worker with Ray, "
                                               "1 without).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Fit a model on all interactions and write every user's top k (never an item the user already has)."""
    _setup_logging(verbose)
    import time

    from recllm.distributed import check_address, ray_session
    from recllm.eval.batch import batch_recommend, write_parquet

    if ray is not None:
        check_address(ray)
    recommender = _fit_on_all(dataset, model, param)
    started = time.perf_counter()
    if ray is None:
        users, items, scores = batch_recommend(recommender, k, shards=shards or 1)
    else:
        with ray_session(ray, workers=workers) as session:
            users, items, scores = batch_recommend(recommender, k, shards=shards or 4 * workers, ray=session)
    rows = write_parquet(out, recommender, users, items, scores)
    console.print(f"wrote {rows:,} rows for {len(users):,} users to {out} in {time.perf_counter() - started:.1f} s"
                  + (f" (Ray: {ray})" if ray else ""))


@batch_app.command("embed")
@cli_errors
def batch_embed_command(
    dataset: DatasetOpt = "movielens-100k",
    embedder: Annotated[str, typer.Option(help="Embedder spec: st (pinned MiniLM), st:PATH or lm[:PATH].")] = "st",
    out: Annotated[Path | None, typer.Option(help="Also write a Parquet file of (item, text, vector) "
                                             "rows.")] = None,
    ray: RayOpt = None,
    workers: RayWorkersOpt = 2,
    shards: Annotated[int | None, typer.Option(min=1, help="Shards of items (default: 4 per worker with Ray, "
                                               "1 without).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Embed every catalog item's text into the embedding store ($RECLLM_HOME/cache/embeddings), where the
    service, the retrievers with item text and the evidence prompts find it instead of embedding again."""
    _setup_logging(verbose)
    import time
    from contextlib import nullcontext

    from recllm.data.registry import load_dataset
    from recllm.distributed import check_address, ray_session
    from recllm.llm.item_text import embed_items, item_texts

    if ray is not None:
        check_address(ray)
    bundle = load_dataset(dataset)
    ids = [str(i) for i in bundle.dataset.item_vocab.ids]
    started = time.perf_counter()
    with ray_session(ray, workers=workers) if ray is not None else nullcontext() as session:
        vectors = embed_items(bundle.catalog, ids, embedder, shards=shards or (4 * workers if ray else 1),
                              ray=session)
    seconds = time.perf_counter() - started
    if out is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"item": ids, "text": item_texts(bundle.catalog, ids),
                                 "vector": pa.array(list(vectors), type=pa.list_(pa.float32()))}), out)
    console.print(f"embedded {len(ids):,} items of {bundle.name} ({vectors.shape[1]} dims) in {seconds:.1f} s"
                  + (f" (Ray: {ray})" if ray else "") + (f"; wrote {out}" if out is not None else ""))


@app.command()
@cli_errors
def fit(
    dataset: DatasetOpt = "movielens-100k",
    model: Annotated[str, typer.Option(help="A registered model: pop, itemknn, ease, als, bpr, sasrec, tiger "
                                       "or a plugin's.")] = "ease",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE hyper-parameter.")] = None,
    out: Annotated[Path, typer.Option(help="Folder to save the model in.")] = Path("model"),
    verbose: VerboseOpt = False,
) -> None:
    """Fit a model on all interactions of a dataset and save it (safetensors + JSON)."""
    _setup_logging(verbose)
    _fit_on_all(dataset, model, param).save(out)
    console.print(f"saved {model} to {out}")


@app.command()
@cli_errors
def recommend(
    user: Annotated[str | None, typer.Option(help="Known user id.")] = None,
    history: Annotated[str | None, typer.Option(help="Comma-separated item ids, oldest first.")] = None,
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    dataset: DatasetOpt = "movielens-100k",
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="A retriever saved by `recllm fit`; "
                                                   "without it the --model retriever is fitted on --dataset.")]
    = None,
    model: Annotated[str, typer.Option(help="Retriever to fit: any registered model (ease, sasrec, tiger, ...).")]
    = "ease",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE retriever hyper-parameter, "
                                                    "or RERANKER.KEY=VALUE for the re-ranker's options.")] = None,
    rerank: Annotated[str | None, typer.Option(help="Re-rank with an LLM: likelihood, verbalizer, listwise or a "
                                               "registered plugin.")]
    = None,
    candidates: Annotated[int, typer.Option(help="How many retrieved items the re-ranker sees.")] = 20,
    explain: Annotated[bool, typer.Option("--explain", help="Explain each item (checked against the catalog).")]
    = False,
    llm: Annotated[str, typer.Option(help="LLM spec for re-ranking and explaining: hf, hf:PATH, "
                                     "openai:URL[,key=value...].")]
    = "hf",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Recommend for a known user or an ad-hoc history: retrieve, optionally re-rank with an LLM and explain."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.models.base import Recommender
    from recllm.pipeline import Pipeline, PipelineConfig, RerankerConfig, RetrieverConfig

    options = parse_params([p if "." in p.partition("=")[0] else f"{model}.{p}" for p in (param or [])], None)
    unknown = set(options) - {model, *([rerank] if rerank else [])}
    if unknown:
        raise ConfigError(f"--param names '{sorted(unknown)[0]}', which is neither the retriever '{model}' nor "
                          "the re-ranker")
    config = PipelineConfig(dataset=dataset, llm=llm, explain=explain,
                            retriever=RetrieverConfig(model=model, params=options.get(model, {})),
                            reranker=RerankerConfig(name=rerank, candidates=candidates,
                                                    options=options.get(rerank, {})) if rerank else None)
    with console.status(f"loading {dataset}" + (" and the language model" if rerank or explain else "")):
        bundle = load_dataset(dataset)
        pipeline = Pipeline.from_config(config, data=bundle)
    if model_dir is not None:
        pipeline.retriever = Recommender.load(model_dir)
    else:
        with console.status(f"fitting the {config.retriever.model} retriever on {bundle.name}"):
            pipeline.fit()
    items = [h.strip() for h in history.split(",") if h.strip()] if history else None
    with console.status("recommending"):
        outcome = pipeline.run(user, history=items, k=k)
    result, catalog = outcome.items, bundle.catalog
    if as_json:
        records = result.to_records()
        for rec in records:
            rec["title"] = catalog.title(rec["item"])
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
        return
    stages = " -> ".join([pipeline.retriever.name, *([rerank] if rerank else []), *(["explain"] if explain else [])])
    table = Table(title=f"{stages}: top {k}", title_justify="left", show_lines=explain)
    for column in ("rank", "item", "title", "score", *(["why"] if explain else [])):
        table.add_column(column, overflow="fold")
    for rank, scored in enumerate(result, start=1):
        table.add_row(str(rank), scored.item, catalog.title(scored.item), f"{scored.score:.4f}",
                      *([scored.explanation or ""] if explain else []))
    console.print(table)
    if outcome.rerank_diagnostics is not None:
        d = outcome.rerank_diagnostics
        console.print(f"re-ranker: {d.latency_s:.2f} s, {d.prompt_tokens} prompt tokens, "
                      f"{len(d.hallucinated)} hallucinated and {d.duplicates} duplicate references grounded away")


@app.command("llm-serve")
@cli_errors
def llm_serve(
    model: Annotated[str, typer.Option(help="LLM spec: hf (the pinned default), hf:FOLDER_OR_GGUF, openai:URL.")]
    = "hf",
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default: there is no authentication).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8001,
    threads: Annotated[int, typer.Option(help="Torch threads for the model (0: torch's default).")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """Serve an LLM over an OpenAI-compatible HTTP API (one warm model shared by several processes)."""
    _setup_logging(verbose)
    from recllm.llm.server import serve_llm

    options = {"num_threads": threads} if threads > 0 and model.startswith("hf") else {}
    console.print(f"serving {model} at http://{host}:{port}/v1 (OpenAI-compatible; Ctrl-C stops)")
    serve_llm(model, host=host, port=port, log_level="info" if verbose else "warning", **options)


SERVE_OPTIONS: dict[str, Any] = {"timeout_keep_alive": 30}
"""uvicorn settings of `recllm serve`: idle connections are kept 30 s (uvicorn's default is 5), since under load
a client reusing a pooled connection that the server has just closed gets a reset instead of an answer. The
loop is asyncio unless ``--loop uvloop``: at 200 connections uvloop left some connections unserved for over
2 s while the loop turned every 0.3 s (p99 1.0-2.2 s against 0.2 s on asyncio in three runs of the same
server and load; docs/benchmarks.md, service load)."""


@app.command("serve")
@cli_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default: there is no authentication).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Annotated[str | None, typer.Option(help="Database URL: sqlite:///FILE or postgresql://USER@HOST:PORT/DB "
                                           "(default: SQLite in $RECLLM_HOME).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML with the service settings (\\[service] table).")] = None,
    llm: Annotated[str | None, typer.Option(help="LLM spec overriding the config: hf, hf:PATH, openai:URL, "
                                            "or none.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes sharing the port and the "
                                         "database; each loads the data and the models (memory times N) and "
                                         "gets cores / N threads.")] = 1,
    loop: Annotated[Literal["asyncio", "uvloop"], typer.Option(
        help="Event loop: asyncio (measured fairer under load) or uvloop.")] = "asyncio",
    verbose: VerboseOpt = False,
) -> None:
    """Serve recommendations, search, rating, explanations and feedback over HTTP (OpenAPI at /docs)."""
    _setup_logging(verbose)
    import uvicorn

    from recllm.serve.app import create_app
    from recllm.serve.service import Service, ServiceConfig
    from recllm.serve.storage import Store

    settings = ServiceConfig.from_toml(config) if config is not None else ServiceConfig()
    if llm is not None:
        settings = settings.with_llm(llm)
    Store(db).close()  # a bad URL or an unreachable database fails here, with one line
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"starting recllm on {settings.pipeline.dataset} (retriever {settings.pipeline.retriever.model}, LLM "
                  f"{settings.llm}, embedder {settings.embedder}); the first start fetches data and models")

    def ready(service: Service) -> None:
        console.print(f"[bold green]recllm is ready:[/] open http://{shown}:{port}/ in a browser "
                      f"(API docs at http://{shown}:{port}/docs; LLM {service.llm_status}; Ctrl-C stops)")

    options: dict[str, Any] = {"host": host, "port": port, "log_level": "info" if verbose else "warning",
                               **SERVE_OPTIONS, "loop": loop}
    if workers == 1:
        uvicorn.run(create_app(config=settings, db_url=db, on_ready=ready, settle=True), **options)
        return
    from recllm.serve.app import worker_environment

    # each worker process builds its own app from these settings (uvicorn starts them from an import string)
    os.environ.update(worker_environment(settings, db, workers))
    console.print(f"starting {workers} worker processes; each says when it is ready")
    uvicorn.run("recllm.serve.app:worker_app", factory=True, workers=workers, **options)


def main() -> None:
    app()


from recllm.cli import audit, evaluate_chat  # noqa: E402, F401  (register `recllm audit` and `evaluate-chat`)
from recllm.cli.train import train_app  # noqa: E402  (it imports the helpers above)

app.add_typer(train_app, name="train")


if __name__ == "__main__":
    main()
