"""Serializers: a value to bytes and back.

A serializer has a `name` (recorded beside what it wrote, so a reader knows
how to read it), `dumps(value) -> bytes` and `loads(data) -> value`. Each is
a small picklable object: it travels with a task to process and Dask
workers, which write results themselves.

- `PickleSerializer`: any value cloudpickle can pickle (functions and classes
  defined in `__main__` included). The default.
- `JSONSerializer`: JSON values only (dicts, lists, str, numbers, bool,
  None); a file anyone can read. Anything else is an error naming its type.
- `PandasSerializer(format)`: a DataFrame in any format pandas both writes
  and reads from a buffer ("csv", "parquet", "json", "feather", "orc",
  "pickle", "stata", "excel", ...), with pandas' own keyword arguments
  for each side. Needs the `pandas` extra.
"""

from __future__ import annotations

import io
import pickle

from headrace._optional import require

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Serializer:
    """Turns a value into bytes and back (see the module docstring)."""

    name = "serializer"

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))


class PickleSerializer(Serializer):
    """Pickle, by the standard library where it can (fast) and by cloudpickle where it
    cannot, or where the standard pickle would refer to `__main__` (cloudpickle writes
    what `__main__` defines by value, so another process reads it)."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            if b"__main__" not in data:
                return data
        except Exception:
            pass
        import cloudpickle

        return cloudpickle.dumps(value)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class JSONSerializer(Serializer):
    name = "json"

    def dumps(self, value: Any) -> bytes:
        import json

        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"JSONSerializer cannot write a {type(value).__name__} ({exc}); return JSON "
                "values (dict, list, str, int, float, bool, None), or use PickleSerializer()."
            ) from None

    def loads(self, data: bytes) -> Any:
        import json

        return json.loads(data)


# Formats whose writer takes a buffer and whose default keywords round-trip a plain frame.
_PANDAS_WRITE_DEFAULTS = {"csv": {"index": False}, "json": {"orient": "table"}}
_PANDAS_READ_DEFAULTS = {"json": {"orient": "table"}}


class PandasSerializer(Serializer):
    """A pandas DataFrame as `format`: `DataFrame.to_<format>` writes, `pandas.read_<format>`
    reads. `write_kwargs` / `read_kwargs` go to them; csv is written without its index
    (the frame reads back as it was written only when its index is a plain range)."""

    def __init__(
        self,
        format: str = "parquet",
        write_kwargs: dict[str, Any] | None = None,
        read_kwargs: dict[str, Any] | None = None,
    ):
        pandas = require("pandas", "pandas", "PandasSerializer")
        formats = sorted(
            name[5:]
            for name in dir(pandas)
            if name.startswith("read_") and hasattr(pandas.DataFrame, f"to_{name[5:]}")
        )
        if format not in formats:
            raise ValueError(
                f"PandasSerializer format {format!r} is not one pandas both writes and reads; "
                f"use one of: {', '.join(formats)}."
            )
        self.format = format
        self.write_kwargs = {**_PANDAS_WRITE_DEFAULTS.get(format, {}), **(write_kwargs or {})}
        self.read_kwargs = {**_PANDAS_READ_DEFAULTS.get(format, {}), **(read_kwargs or {})}

    @property
    def name(self) -> str:
        return f"pandas-{self.format}"

    def dumps(self, value: Any) -> bytes:
        if not hasattr(value, f"to_{self.format}"):
            raise TypeError(
                f"PandasSerializer({self.format!r}) writes pandas DataFrames, not a "
                f"{type(value).__name__}."
            )
        buffer = io.BytesIO()
        getattr(value, f"to_{self.format}")(buffer, **self.write_kwargs)
        return buffer.getvalue()

    def loads(self, data: bytes) -> Any:
        pandas = require("pandas", "pandas", "PandasSerializer")
        return getattr(pandas, f"read_{self.format}")(io.BytesIO(data), **self.read_kwargs)

    def __repr__(self) -> str:
        return f"PandasSerializer({self.format!r})"


def serializer_named(name: str) -> Serializer:
    """The serializer a recorded name stands for (with its default options)."""
    if name == "pickle":
        return PickleSerializer()
    if name == "json":
        return JSONSerializer()
    if name.startswith("pandas-"):
        return PandasSerializer(name[len("pandas-") :])
    raise ValueError(f"no serializer is named {name!r}")
