"""The ```python blocks of a markdown page, for the tests that run docs or compare them to code."""


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
