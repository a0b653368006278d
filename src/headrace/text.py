"""Recorded text shown to people: control characters made visible, in one place.

Names, messages and log lines come from users' code and data; shown raw in a
terminal they could clear it or retitle it, in a page they could mislead. Every
face (the CLI, the progress display) shows them through `safe`.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates.
_HOSTILE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_HOSTILE_KEEPING_LINES = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match) -> str:
    return repr(match.group())[1:-1]


def safe(text: Any, lines: bool = False) -> str:
    """`text` with its control characters escaped; `lines=True` keeps newlines and tabs."""
    return (_HOSTILE_KEEPING_LINES if lines else _HOSTILE).sub(_escape, str(text))
