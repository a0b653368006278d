"""The X-Files tutorial as a runnable headrace program, with an offline transcript site.

    python -m examples.xfiles               # run every stage against the bundled site
    python -m examples.xfiles --url URL     # ... against a real site instead
    python -m examples.xfiles.site --port 8000   # only serve the bundled site

`site` writes and serves the synthetic site; `flow` holds the tutorial's
tasks, flows and stages. See docs/tutorial.md.
"""

# Deliberately empty: importing `site` here would make `python -m examples.xfiles.site`
# warn that the module was already imported before running as __main__.
