"""The engine: `core` runs the units of a flow run, which `graph_run` adds; `function_flow` runs @flow functions."""
