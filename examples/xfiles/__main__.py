"""`python -m examples.xfiles [--url URL] [--db FILE]`: run the tutorial (see `flow.main`)."""

import sys

from .flow import cli

sys.exit(cli())
