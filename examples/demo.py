"""What `make demo` runs: the X-Files tutorial against the bundled offline transcript site.

    python examples/demo.py         # or: make demo

It writes the synthetic site (200 episodes) into a temporary directory, serves
it on 127.0.0.1, runs the tutorial's five stages (one episode; every episode,
one page at a time; the same on eight threads with at most three requests at
once; into SQLite without fetching a page again; one more episode that the
home page does not link), prints each stage's wall time and the rows that
mention "programming", and stops the site. docs/tutorial.md tells the story;
examples/xfiles/flow.py is the code. Every run is recorded in the history
under HEADRACE_HOME (default ~/.headrace): `.venv/bin/headrace runs ls` lists them.
"""

import sys

# Run as a script, this file's directory is on sys.path: the example package imports as `xfiles`.
from xfiles.flow import main

if __name__ == "__main__":
    sys.exit(main())
