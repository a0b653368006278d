"""Optional dependencies: import one, or raise an error naming the extra that installs it.

Every lazy import of a package that only an extra of headrace installs goes through
`require`, so a missing one always says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from headrace.errors import MissingDependencyError


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import `module`; if it is not installed, raise MissingDependencyError naming `extra`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0] and exc.name != module:
            raise  # the package is there, but something it imports is broken: say that
        raise MissingDependencyError(module, extra, needed_by) from exc
