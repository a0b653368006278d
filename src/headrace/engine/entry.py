"""Where a flow can be loaded from again: the entry point its runs record.

    FILE.py:NAME   a flow in a script run as `python FILE.py`, or in a file
                   `headrace run` loaded (the module is marked `__headrace_file__`)
    module:NAME    a flow in an importable module
    None           a flow that lives only in `__main__` of a notebook or a REPL:
                   nothing can load it again, so it is resumed from Python

`headrace runs resume` loads the flow from there.
"""

from __future__ import annotations

import os
import sys


def entry_point(flow, module_name: str | None) -> str | None:
    """The entry point of `flow`, defined in the module named `module_name`."""
    module = sys.modules.get(module_name) if module_name else None
    if module is None:
        return None
    name = next((k for k, v in list(vars(module).items()) if v is flow), None)
    if name is None:
        return None
    file = getattr(module, "__file__", None)
    if module_name == "__main__" or getattr(module, "__headrace_file__", False):
        return f"{os.path.abspath(file)}:{name}" if file else None
    return f"{module_name}:{name}"
