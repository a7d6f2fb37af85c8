"""`recllm audit`: fairness by user group, item exposure, popularity bias and robustness of retrievers
(``recllm.eval.audit``), written as JSON, Markdown and a self-contained HTML page with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


@app.command("audit")
@cli_errors
def audit(
    dataset: DatasetOpt = "movielens-100k",
    models: Annotated[str, typer.Option(help="Comma-separated retrievers: pop,itemknn,ease,als,bpr,sasrec, "
                                        "...")] = "pop,ease",
    users: Annotated[int | None, typer.Option(help="Audit a seeded sample of this many test users (default: "
                                              "all).")] = None,
    k: Annotated[int, typer.Option("--k", help="List length for accuracy, exposure and robustness.")] = 10,
    split: Annotated[str, typer.Option(help="leave-one-out or temporal.")] = "leave-one-out",
    seed: Annotated[int, typer.Option(help="Seed for the split, the user sample and the bootstrap.")] = 0,
    param: ParamOpt = None,
    config: ModelConfigOpt = None,
    mitigate: Annotated[str, typer.Option(help="Comma-separated mitigations measured beside each model: "
                                          "popularity-calibration, tail-quota, popularity-penalty (its weight chosen "
                                          "on validation users).")] = "",
    rerank: Annotated[str, typer.Option(help="Comma-separated LLM re-rankers audited over the first model's top "
                                        "20: stated user attributes (FaiRLLM), prompt paraphrases, position "
                                        "bias, hallucination and explanation faithfulness.")] = "",
    llm: Annotated[str, typer.Option(help="LLM for --rerank: hf, hf:NAME or openai:URL.")] = "hf",
    llm_users: Annotated[int, typer.Option(help="Users whose lists the LLM re-ranks once neutrally and once per "
                                           "attribute value.")] = 50,
    attributes: Annotated[str, typer.Option(help="Comma-separated attributes stated in the prompts for --rerank: "
                                            "age, gender, occupation, country, continent, race, religion, "
                                            "physique.")] = "age,gender,occupation",
    permutations: Annotated[int, typer.Option(help="Cyclic rotations aggregated in the position probe of --rerank "
                                              "(0: no position probe).")] = 4,
    probe_users: Annotated[int, typer.Option(help="Users of the position probe (0: --llm-users); it takes "
                                             "1 + --permutations calls a user.")] = 0,
    rank_users: Annotated[int | None, typer.Option(help="Users whose lists each --rerank re-ranker re-orders for "
                                                   "the audit's accuracy, user-group, exposure and popularity rows, "
                                                   "beside the first model's own lists for them (default: "
                                                   "--llm-users; 0: none).")] = None,
    explain: Annotated[bool, typer.Option(help="Check the model's explanations of each --rerank list's first "
                                          "item.")] = True,
    out: Annotated[Path, typer.Option(help="Folder for the JSON, Markdown and HTML report.")] = Path("results"),
    verbose: VerboseOpt = False,
) -> None:
    """Audit retrievers on one split: NDCG and HR per user group (every attribute of the users), exposure
    (Gini, long tail, coverage), popularity bias and robustness to losing the oldest 10% of history; with
    --mitigate, each model's lists again after a popularity mitigation, with its cost in NDCG; with --rerank,
    how much each LLM re-ranker's ranking moves when the prompt states the user's age, gender or occupation or
    is reworded, how much the shown position decides, what it makes up, whether its explanations hold, and what its
    re-ordering of the first model's lists does to accuracy per user group, exposure and popularity."""
    _setup_logging(verbose)
    from recllm.data.registry import load_dataset
    from recllm.eval.audit import MITIGATIONS, run_audit
    from recllm.eval.audit_report import (
        RERANKED_HEADER,
        SUMMARY_HEADER,
        pipeline_audit_name,
        publish_audit,
        reranked_rows,
        summary_rows,
        write_audit,
    )
    from recllm.eval.runner import make_split
    from recllm.eval.sensitivity import FAIRLLM_VALUES

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ConfigError("--models is empty: name at least one retriever, e.g. --models pop,ease")
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    if split == "cold-items":
        raise ConfigError("--split cold-items holds out items, not users' next items; audit leave-one-out or "
                          "temporal")
    mitigations = [m.strip() for m in mitigate.split(",") if m.strip()]
    unknown = [m for m in mitigations if m not in MITIGATIONS]
    if unknown:
        raise ConfigError(f"--mitigate: unknown mitigation '{unknown[0]}'; known: {', '.join(MITIGATIONS)}")
    rerankers = [r.strip() for r in rerank.split(",") if r.strip()]
    if rerankers and llm_users < 1:
        raise ConfigError(f"--llm-users must be at least 1, got {llm_users}")
    if permutations == 1 or permutations < 0:
        raise ConfigError(f"--permutations must be 0 (no position probe) or at least 2, got {permutations}")
    probed = probe_users or llm_users
    if probe_users < 0:
        raise ConfigError(f"--probe-users must be 0 (as --llm-users) or positive, got {probe_users}")
    if rerankers and permutations and probed < 20:
        raise ConfigError(f"the position probe needs at least 20 users (one per shown position of the top 20), got "
                          f"{probed}: raise --probe-users (or --llm-users), or use --permutations 0")
    if rank_users is not None and rank_users < 0:
        raise ConfigError(f"--rank-users must be 0 (none) or positive, got {rank_users}")
    stated = [a.strip() for a in attributes.split(",") if a.strip()]
    if rerankers and not stated:
        raise ConfigError("--attributes is empty: name at least one, e.g. --attributes gender")
    unknown_attributes = [a for a in stated if a not in FAIRLLM_VALUES]
    if unknown_attributes:
        raise ConfigError(f"--attributes: unknown attribute '{unknown_attributes[0]}'; known: "
                          f"{', '.join(FAIRLLM_VALUES)}")
    params = parse_params(param, config)
    with console.status(f"loading {dataset}"):
        bundle = load_dataset(dataset)
        the_split = make_split(bundle, split, seed)
    status = console.status("starting")
    with status:
        report = run_audit(bundle, the_split, names, params=params, users=users, k=k, seed=seed, split_name=split,
                           mitigations=mitigations, rerankers=rerankers, llm=llm, llm_users=llm_users,
                           attributes={a: FAIRLLM_VALUES[a] for a in stated}, permutations=permutations,
                           explain=explain, probe_users=probe_users or None, rank_users=rank_users,
                           on_model=lambda m, stage: status.update(f"{m}: {stage}"))
    table = Table(title=f"audit: {bundle.name}, {report.users} users", title_justify="left")
    for column in SUMMARY_HEADER:
        table.add_column(column.format(k=k), overflow="fold")
    for row in summary_rows(report):
        table.add_row(*(cell.replace("**", "") for cell in row))
    console.print(table)
    if report.reranked:
        ranked = Table(title=f"re-ranked lists: {report.reranked_users} users", title_justify="left")
        for column in RERANKED_HEADER:
            ranked.add_column(column.format(k=k), overflow="fold")
        for row in reranked_rows(report):
            ranked.add_row(*(cell.replace("**", "") for cell in row))
        console.print(ranked)
    stem = f"audit-{bundle.name.replace(':', '_').replace('/', '_')}-{split}"
    paths = write_audit(report, out, stem)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    audited = names + [pipeline_audit_name(names[0], r) for r in rerankers if report.reranked]
    published = publish_audit(paths, bundle.name, audited)
    console.print(f"published as the latest audit of {', '.join(audited)} on {bundle.name} (a service with that "
                  f"retriever, or retriever+re-ranker, shows it at /audit): {published[0].parent}")
