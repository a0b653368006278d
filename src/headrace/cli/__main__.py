"""`python -m headrace.cli`: the same command as the `headrace` script."""

from headrace.cli import main

main(prog_name="headrace")
