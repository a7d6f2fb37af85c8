"""Bounded load test of `recllm serve` on loopback: recommendation requests with and without LLM re-ranking.

Starts a real server process (MovieLens-100K, EASE retriever, the default LLM, a fresh SQLite database),
waits until it answers, then fires GET /users/{user}/recommendations from many concurrent clients:
``--requests`` in all with ``--concurrency`` in flight (retrieval only), then ``--rerank-requests`` with
``rerank=true`` at ``--rerank-concurrency`` (and as many one at a time), each for a different user so that no
re-ranked list comes from the service's LLM response cache. Every response must be a 200 with k items; anything else is
counted as an error. Latency is measured per request by the client, from send to the last byte, so under
load it includes the time a request waits for the server. The client shares the machine's cores with the
server, which this benchmark reports rather than hides.

    python benchmarks/service_load.py                 # 1,000 requests at 200 concurrent; 20 re-ranked at 10
    python benchmarks/service_load.py docs            # rewrite the docs section from the saved JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import IO

import httpx
import numpy as np

from _docs import write_section
from recllm.data import load_dataset
from recllm.eval.report import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "service-load.json"
SECTION = "service-load"


@dataclass
class Phase:
    """One batch of requests: how many, how concurrent, what came back and how fast."""

    name: str
    requests: int
    concurrency: int
    errors: int
    statuses: dict[str, int]
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    first_error: str | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(port: int, db: Path, llm: str) -> Iterator[tuple[str, float]]:
    """A `recllm serve` process on loopback; yields its base URL and the seconds it took to answer /health."""
    command = [sys.executable, "-m", "recllm", "serve", "--port", str(port), "--db", f"sqlite:///{db}",
               "--llm", llm]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"http://127.0.0.1:{port}", wait_until_up(process, port, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_up(process: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> float:
    """Seconds until /health answers 200; exits with the server's output if it dies or never answers."""
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.perf_counter() - start > 300:
            raise SystemExit("the server did not come up within 300 s")
        time.sleep(0.2)
    return time.perf_counter() - start


async def fire(base: str, users: list[str], *, concurrency: int, k: int, rerank: bool, name: str,
               timeout: float) -> Phase:
    """Send one request per entry of ``users`` with at most ``concurrency`` in flight."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    first_error: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    params = {"k": str(k), "rerank": "true" if rerank else "false"}

    async def one(client: httpx.AsyncClient, user: str) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                response = await client.get(f"{base}/users/{user}/recommendations", params=params)
                ok = response.status_code == 200 and len(response.json()["items"]) == k
                statuses[str(response.status_code)] += 1
                if not ok and not first_error:
                    first_error.append(f"{response.status_code}: {response.text[:300]}")
            except httpx.HTTPError as exc:
                ok = False
                statuses[type(exc).__name__] += 1
                if not first_error:
                    first_error.append(repr(exc))
            latencies.append(time.perf_counter() - start)
            if not ok:
                statuses["not ok"] += 1

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, u) for u in users))
        wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    errors = statuses.pop("not ok", 0)
    return Phase(name, len(users), concurrency, errors, dict(statuses), round(wall, 2), round(len(users) / wall, 1),
                 *(round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)), round(float(ms.max()), 1),
                 first_error[0] if first_error else None)


def run(args: argparse.Namespace) -> dict[str, object]:
    load_before = os.getloadavg()[0]  # other work on the machine skews latencies: recorded, not hidden
    ids = list(load_dataset("movielens-100k").dataset.user_vocab.ids)
    rng = np.random.default_rng(args.seed)
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory() as tmp, server(free_port(), Path(tmp) / "load.sqlite", args.llm) as (base,
                                                                                                          up):
        warm = asyncio.run(fire(base, ids[:5], concurrency=1, k=args.k, rerank=True, name="warm-up", timeout=600))
        if warm.errors:
            raise SystemExit(f"warm-up failed: {warm.first_error}")
        plain = [str(u) for u in rng.choice(ids, size=args.requests, replace=True)]
        phases.append(asyncio.run(fire(base, plain, concurrency=args.concurrency, k=args.k, rerank=False,
                                       name="retrieval only (EASE top-k)", timeout=120)))
        # distinct users, none seen in the warm-up, so no re-ranked request is answered from the LLM cache
        fresh = [str(u) for u in rng.permutation(ids[5:])[:2 * args.rerank_requests]]
        if args.rerank_sequential:
            phases.append(asyncio.run(fire(base, fresh[args.rerank_requests:], concurrency=1, k=args.k,
                                           rerank=True, name="EASE top-20 + likelihood re-ranking, one at a time",
                                           timeout=600)))
        phases.append(asyncio.run(fire(base, fresh[:args.rerank_requests], concurrency=args.rerank_concurrency,
                                       k=args.k, rerank=True, name="EASE top-20 + likelihood re-ranking",
                                       timeout=3600)))
    return {"date": date.today().isoformat(), "command": args.command, "machine": machine_info(),
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "server_start_s": round(up, 1), "k": args.k, "llm": args.llm, "phases": [asdict(p) for p in phases]}


def docs() -> None:
    result = json.loads(RESULTS.read_text())
    machine = result["machine"]
    lines = [
        "## Service under load (`recllm serve`, loopback)",
        "",
        f"Command: `{result['command']}`. Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"GPU {machine['gpu']}; {result['date']}. One uvicorn worker; MovieLens-100K, EASE retriever, "
        f"LLM `{result['llm']}` (SmolLM2-135M through transformers, CPU); a fresh SQLite database; "
        f"k = {result['k']}. The load client runs on the same cores as the server. Latency is per request, "
        "from send to last byte, so it includes queueing behind the other requests in flight. Re-ranked "
        "requests are for distinct users, so none is answered from the LLM response cache (a repeated "
        "request is, in tens of milliseconds).",
        "",
        "| phase | requests | concurrent | errors | statuses | wall s | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["phases"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(p["statuses"].items()))
        lines.append(f"| {p['name']} | {p['requests']:,} | {p['concurrency']} | {p['errors']} | {statuses} | "
                     f"{p['wall_s']} | {p['throughput_rps']} | {p['p50_ms']:,} | {p['p95_ms']:,} | "
                     f"{p['p99_ms']:,} | {p['max_ms']:,} |")
    lines += ["", f"The server answered /health {result['server_start_s']} s after it was started (data, EASE fit, "
              "LLM and embedder loaded). One-minute load average of the machine: "
              f"{result.get('load_average_before', '?')} before the run, {result.get('load_average_after', '?')} "
              "after it (2 would mean both cores busy with other work)."]
    rerank = [p for p in result["phases"] if "re-ranking" in p["name"]]
    if rerank:
        lines += ["", "Re-ranking runs the 135M model once per request (20 candidates, likelihood scoring) and the "
                  "service holds one lock around the model, so re-ranked requests are served one after another: "
                  "under concurrency their latency is mostly waiting. Retrieval-only requests are not blocked by "
                  "the lock. A GPU server (or an OpenAI-compatible LLM server with batching) is the way to serve "
                  "re-ranked lists to many people at once."]
    write_section(SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", choices=["run", "docs"], default="run")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rerank-requests", type=int, default=20)
    parser.add_argument("--rerank-concurrency", type=int, default=10)
    parser.add_argument("--rerank-sequential", action=argparse.BooleanOptionalAction, default=True,
                        help="also send the re-ranked requests one at a time (the service time without waiting)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--llm", default="hf")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.section == "run":
        args.command = " ".join(["python benchmarks/service_load.py", shlex.join(sys.argv[1:])]).strip()
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(run(args), indent=2) + "\n")
    docs()


if __name__ == "__main__":
    main()
