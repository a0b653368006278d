"""The engine: runs graphs. `scheduler.run_flow` is its door; see each module's docstring."""
