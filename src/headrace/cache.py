"""Cache policies and the canonical keys they compute.

A policy names what a task run's cache key is made of:

    INPUTS            the task's arguments (`INPUTS - "x"` leaves `x` out)
    TASK_SOURCE       the task's code: its syntax tree without docstrings, so a
                      comment or a docstring edit keeps the key and a changed
                      body changes it
    FLOW_PARAMETERS   the flow run's parameters
    NO_CACHE          no key: the run is never cached

Policies add up: `INPUTS + TASK_SOURCE`. `policy.key(fn, arguments,
parameters)` is a hex SHA-256 of the parts' canonical encodings, or None
for NO_CACHE.

The encoding never uses Python's `hash()` (randomised per process for str
and bytes) nor pickle (a set pickles in hash order): the same inputs give
the same key in any process, under any PYTHONHASHSEED. Each value is
encoded with its type: dicts and sets in the order of their encoded items
(a reordered dict keys the same), floats exactly (`float.hex`), pandas
objects by `pandas.util.hash_pandas_object` plus their columns and dtypes,
numpy arrays by dtype, shape and bytes, pydantic models by their JSON
dump, dataclasses, enums and plain objects (classes of `__main__` too) by
their class's qualified name and their fields. A value of none of these
kinds (an open file, a lock) is a `CacheKeyError` naming the input, with
what to do.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import pathlib
import struct
import textwrap
import uuid
from collections.abc import Callable, Iterable

from headrace.errors import HeadraceError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class CacheKeyError(HeadraceError, TypeError):
    """An input that has no canonical encoding, so no cache key."""


# -- the canonical encoding --------------------------------------------------------------------


def _length(n: int) -> bytes:
    return struct.pack(">Q", n)


def _text(tag: bytes, text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return tag + _length(len(data)) + data


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def canonical(value: Any, _seen: frozenset[int] = frozenset()) -> bytes:
    """The bytes that stand for `value` in a cache key (see the module docstring)."""
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        return _text(b"i", str(value))
    if kind is float:
        return _text(b"f", value.hex())
    if kind is str:
        return _text(b"s", value)
    if kind in (bytes, bytearray, memoryview):
        data = bytes(value)
        return b"b" + _length(len(data)) + data
    if id(value) in _seen:
        return b"@"  # a cycle: the container is being encoded further up
    seen = _seen | {id(value)}
    if kind in (list, tuple):
        return _sequence(b"l" if kind is list else b"t", value, seen)
    if isinstance(value, list | tuple):  # a namedtuple, a list subclass: its class counts
        return _text(b"c", _qualname(kind)) + _sequence(b"t", value, seen)
    if isinstance(value, dict):
        items = sorted(canonical(k, seen) + canonical(v, seen) for k, v in value.items())
        return _parts(b"d" + _text(b"", _qualname(kind)), items)
    if isinstance(value, set | frozenset):
        return _parts(b"e", sorted(canonical(item, seen) for item in value))
    return _other(value, kind, seen)


def _sequence(tag: bytes, items: Iterable, seen: frozenset[int]) -> bytes:
    return _parts(tag, [canonical(item, seen) for item in items])


def _parts(tag: bytes, parts: list[bytes]) -> bytes:
    return tag + _length(len(parts)) + b"".join(_length(len(p)) + p for p in parts)


def _other(value: Any, kind: type, seen: frozenset[int]) -> bytes:
    name = _text(b"c", _qualname(kind))
    if isinstance(value, enum.Enum):
        return name + canonical(value.value, seen)
    for base in (int, float, str, bytes):  # a subclass of a plain type: its value counts
        if isinstance(value, base):
            return name + canonical(base(value), seen)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return name + _text(b"", value.isoformat())
    if isinstance(value, datetime.timedelta):
        return name + canonical((value.days, value.seconds, value.microseconds))
    if isinstance(value, decimal.Decimal | uuid.UUID | pathlib.PurePath | complex):
        return name + _text(b"", str(value))
    module = kind.__module__.split(".")[0]
    if module == "pandas" and hasattr(value, "dtypes"):
        return name + _pandas(value)
    if module == "numpy" and hasattr(value, "dtype"):
        import numpy

        array = numpy.ascontiguousarray(value)
        if array.dtype.hasobject:
            return name + _sequence(b"l", array.tolist(), seen)
        return name + _text(b"", f"{array.dtype.str}{array.shape}") + array.tobytes()
    if hasattr(value, "model_dump") and hasattr(kind, "model_fields"):  # pydantic
        return name + canonical(value.model_dump(mode="json"), seen)
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return name + canonical(fields, seen)
    if inspect.isfunction(value) or inspect.isclass(value):
        return name + _text(b"", _qualname(value))
    fields = _fields(value)
    if fields is None:
        raise CacheKeyError(f"a {_qualname(kind)} has no canonical encoding")
    return name + canonical(fields, seen)


def _fields(value: Any) -> dict | None:
    """A plain object's attributes (from __dict__ and __slots__), or None if it has none
    a key could stand on (a C object such as a file or a lock)."""
    fields = dict(getattr(value, "__dict__", None) or {})
    for cls in type(value).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(value, slot) and slot not in ("__dict__", "__weakref__"):
                fields[slot] = getattr(value, slot)
    if fields or hasattr(value, "__dict__"):
        return fields
    return None


def _pandas(value: Any) -> bytes:
    import pandas

    hashed = pandas.util.hash_pandas_object(value, index=True).to_numpy().tobytes()
    shape = [str(value.dtypes.to_dict() if hasattr(value.dtypes, "to_dict") else value.dtypes)]
    if hasattr(value, "columns"):
        shape.append(repr(list(value.columns)))
    return canonical(shape) + hashed


# -- the task's code ------------------------------------------------------------------------------


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(fn: Callable) -> bytes:
    """The code of `fn` as its syntax tree without docstrings (comments never reach the
    tree); from its code object when its source cannot be read (a `-c` script, a REPL).
    Read once per function object."""
    try:
        return _fingerprint(fn)
    except TypeError:  # an unhashable callable: read every time
        return _fingerprint.__wrapped__(fn)


@functools.lru_cache(maxsize=1024)
def _fingerprint(fn: Callable) -> bytes:
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        code = getattr(fn, "__code__", None)
        if code is None:
            return _text(b"q", _qualname(fn) if inspect.isclass(fn) else repr(fn))
        return _code(code, fn.__doc__)
    if tree.body and isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        tree.body[0].decorator_list = []  # @task(...) options are not the code
    return _text(b"a", ast.dump(_without_docstrings(tree), include_attributes=False))


def _code(code, doc: str | None = None) -> bytes:
    consts = [c for c in code.co_consts if not isinstance(c, type(code))]
    if consts and (consts[0] is None or consts[0] == doc):
        consts = consts[1:]  # the docstring's slot: the docstring, or None without one
    nested = [_code(c) for c in code.co_consts if isinstance(c, type(code))]
    return _parts(b"k", [code.co_code, canonical(consts), canonical(list(code.co_names)), *nested])


# -- policies -----------------------------------------------------------------------------------


Part = tuple[str, bytes]  # a named part of a key: ("input x", its encoding)


class CachePolicy:
    """What a cache key is made of (see the module docstring)."""

    def parts(self, fn, arguments: dict[str, Any], parameters: dict[str, Any]) -> list[Part]:
        """The key's named parts; None when this run has no key (NO_CACHE)."""
        raise NotImplementedError

    def key(self, fn, arguments: dict[str, Any], parameters: dict[str, Any] | None = None):
        """The key of a run with these arguments and flow parameters; None for NO_CACHE."""
        parts = self.parts(fn, arguments, parameters or {})
        return None if parts is None else key_of(parts)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return _Compound([*_members(self), *_members(other)])

    def __sub__(self, name: str) -> CachePolicy:
        """Leave input `name` out; a policy that does not read the inputs is unchanged."""
        return self


def key_of(parts: list[Part]) -> str:
    """The hex SHA-256 of named parts, in their order."""
    return hashlib.sha256(_parts(b"K", [_text(b"", n) + data for n, data in parts])).hexdigest()


def digests(parts: list[Part]) -> dict[str, str]:
    """A short digest per part: what a miss compares to say which part changed."""
    return {name: hashlib.sha256(data).hexdigest()[:16] for name, data in parts}


def _members(policy: CachePolicy) -> list[CachePolicy]:
    return list(policy.members) if isinstance(policy, _Compound) else [policy]


class _Compound(CachePolicy):
    def __init__(self, members: list[CachePolicy]):
        self.members = tuple(members)

    def __sub__(self, name: str) -> CachePolicy:
        return _Compound([m - name for m in self.members])

    def parts(self, fn, arguments, parameters):
        parts = []
        for member in self.members:
            more = member.parts(fn, arguments, parameters)
            if more is None:
                return None  # NO_CACHE anywhere: no key
            parts.extend(more)
        return parts

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.members))


class _Inputs(CachePolicy):
    def __init__(self, left_out: frozenset[str] = frozenset()):
        self.left_out = left_out

    def parts(self, fn, arguments, parameters):
        parts = [("inputs", b"")]  # a run with no inputs still keys as "by inputs"
        for name in sorted(arguments):
            if name in self.left_out:
                continue
            try:
                parts.append((f"input {name}", canonical(arguments[name])))
            except CacheKeyError as exc:
                raise CacheKeyError(
                    f"Input {name!r} cannot be part of a cache key: {exc}. Leave it out "
                    f"(cache_policy=INPUTS - {name!r}) or give the task a cache_key_fn."
                ) from None
        return parts

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            return NotImplemented
        return _Inputs(self.left_out | {name})

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in sorted(self.left_out))


class _TaskSource(CachePolicy):
    def parts(self, fn, arguments, parameters):
        return [("task source", source_fingerprint(fn))]

    def __repr__(self) -> str:
        return "TASK_SOURCE"


class _FlowParameters(CachePolicy):
    def parts(self, fn, arguments, parameters):
        try:
            return [("flow parameters", canonical(dict(parameters)))]
        except CacheKeyError as exc:
            raise CacheKeyError(f"A flow parameter cannot be part of a cache key: {exc}.") from None

    def __repr__(self) -> str:
        return "FLOW_PARAMETERS"


class _NoCache(CachePolicy):
    def parts(self, fn, arguments, parameters):
        return None

    def __repr__(self) -> str:
        return "NO_CACHE"


class CacheOptions:
    """A task's cache settings, checked when the task is made (`task._cache`): how a
    run's key is made, how long its entry holds, whether to refresh it."""

    __slots__ = ("task_name", "policy", "key_fn", "expiration", "refresh")

    def __init__(self, task_name, policy, key_fn, expiration, refresh):
        self.task_name, self.policy, self.key_fn = task_name, policy, key_fn
        self.expiration, self.refresh = expiration, refresh

    @classmethod
    def of(cls, task) -> CacheOptions:
        name, policy, key_fn = task.name, task.cache_policy, task.cache_key_fn
        where = f"Task {name!r}:"
        if policy is not None and not isinstance(policy, CachePolicy):
            raise TypeError(
                f"{where} cache_policy must be a policy from headrace.cache (INPUTS, "
                f"TASK_SOURCE, FLOW_PARAMETERS, NO_CACHE, added with +), got {policy!r}."
            )
        if key_fn is not None and not callable(key_fn):
            raise TypeError(f"{where} cache_key_fn must be callable(context, arguments).")
        if policy is not None and key_fn is not None:
            raise TypeError(f"{where} give cache_policy or cache_key_fn, not both.")
        if policy is None and key_fn is None:
            raise TypeError(f"{where} refresh_cache=True needs a cache_policy or cache_key_fn.")
        if task.target is not None:
            raise TypeError(
                f"{where} a target is already its task's cache (the file is read when it "
                "exists); give target= or the cache options, not both."
            )
        if task.persist_result is False:
            raise TypeError(
                f"{where} a cached task's result is read from where it was persisted; drop "
                "persist_result=False, or the cache options."
            )
        expiration = task.cache_expiration
        if isinstance(expiration, datetime.timedelta):
            expiration = expiration.total_seconds()
        if expiration is not None and (
            isinstance(expiration, bool)
            or not isinstance(expiration, int | float)
            or expiration <= 0
        ):
            raise ValueError(
                f"{where} cache_expiration must be a timedelta or seconds > 0 (None: never "
                f"expires), got {task.cache_expiration!r}."
            )
        if task.refresh_cache not in (True, False):
            raise TypeError(f"{where} refresh_cache must be True or False.")
        return cls(name, policy, key_fn, expiration, task.refresh_cache)

    def key(self, fn, arguments, parameters, context) -> tuple[str | None, list[Part]]:
        """(the run's key, its named parts); (None, []) when the run has no key."""
        if self.key_fn is not None:
            key = self.key_fn(context, dict(arguments))
            if key is not None and not isinstance(key, str):
                raise CacheKeyError(
                    f"cache_key_fn returned a {type(key).__name__}; return a str, or None "
                    "not to cache this run."
                )
            return key, []
        parts = self.policy.parts(fn, arguments, parameters)
        if parts is None:
            return None, []
        parts = [("task", _text(b"", self.task_name)), *parts]  # keys of two tasks differ
        return key_of(parts), parts


INPUTS: CachePolicy = _Inputs()
TASK_SOURCE: CachePolicy = _TaskSource()
FLOW_PARAMETERS: CachePolicy = _FlowParameters()
NO_CACHE: CachePolicy = _NoCache()

__all__ = [
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "TASK_SOURCE",
    "CacheKeyError",
    "CacheOptions",
    "CachePolicy",
    "canonical",
    "source_fingerprint",
]
