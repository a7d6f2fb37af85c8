"""The entry point every benchmark script shares: ``run`` measures and writes results, ``docs`` rewrites its part
of docs/benchmarks.md from them (after a run too)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable

import torch


def parser(description: str | None) -> argparse.ArgumentParser:
    """A parser with the ``run``/``docs`` section and ``--threads`` (torch CPU threads, default both cores)."""
    out = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("section", choices=["run", "docs"])
    out.add_argument("--threads", type=int, default=2)
    return out


def main(script: str, arguments: argparse.ArgumentParser, run: Callable[[argparse.Namespace, str], None],
         docs: Callable[[argparse.Namespace], None]) -> None:
    """Parse, log at INFO, set torch's threads, run the section (``run`` gets the command line that reproduces
    it), then write the docs."""
    args = arguments.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.section == "run":
        run(args, f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    docs(args)
