#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs recllm (CPU torch) and runs a job.
#   ./run.sh serve [ARGS]    the main job: the service and its web page on the embedded defaults
#                            (MovieLens-100K, the default LLM and embedder); prints the page's address
#   ./run.sh demo            a terminal demo: recommendations and a small evaluation
#   ./run.sh test [ARGS]     the test suite (pytest ARGS)
#   ./run.sh recllm ARGS     any recllm command
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=.venv/.recllm-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing recllm and its dependencies into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$stamp"
fi
job=${1:-serve}
shift || true
case "$job" in
  serve) exec .venv/bin/recllm serve "$@" ;;
  demo) exec .venv/bin/recllm demo "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  recllm) exec .venv/bin/recllm "$@" ;;
  *) echo "usage: ./run.sh serve [ARGS] | demo | test [pytest args] | recllm ARGS" >&2; exit 2 ;;
esac
