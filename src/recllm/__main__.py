"""`python -m recllm` runs the command-line tool."""

from recllm.cli import main

main()
