"""Readers of a markdown page's python blocks and tables, for the tests that run docs or
compare them to code."""

from __future__ import annotations

import re
from pathlib import Path


def python_blocks(text: str) -> list[tuple[str, int, str]]:
    """(section heading, first line, code) of every ```python block of a markdown page."""
    blocks, heading, code, start = [], "", None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if code is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif code is None and line.strip() == "```python":
            code, start = [], number + 1
        elif code is not None and line.strip() == "```":
            blocks.append((heading, start, "\n".join(code) + "\n"))
            code = None
        elif code is not None:
            code.append(line)
    assert code is None, f"a ```python block opened at line {start} never closes"
    return blocks


def cells(row: str) -> list[str]:
    """Split a markdown table row on `|`, except inside backticks or after a backslash."""
    found, current, in_code, escaped = [], [], False, False
    for ch in row.strip().strip("|"):
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "`":
            in_code = not in_code
            current.append(ch)
        elif ch == "|" and not in_code:
            found.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    found.append("".join(current).strip())
    return found


def table(page: Path, title: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) rows of the first table under heading `title`."""
    lines = page.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"#+\s+" + re.escape(title), line)]
    assert starts, f"{page.name} has no heading {title!r}"
    i = starts[0] + 1
    while i < len(lines) and not lines[i].startswith("|"):
        assert not lines[i].startswith("#"), f"no table under heading {title!r}"
        i += 1
    header = cells(lines[i])
    rows = []
    for number in range(i + 2, len(lines)):  # skip the |---| line
        if not lines[number].startswith("|"):
            break
        row = cells(lines[number])
        assert len(row) == len(header), (
            f"{page.name} line {number + 1}: {len(row)} cells, header has {len(header)}"
        )
        rows.append((number + 1, row))
    return header, rows
