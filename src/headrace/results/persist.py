"""Persisted results: where a task run's value can be read again.

After a successful run the worker serialises the value (the task's
`serializer`, PickleSerializer by default). Up to INLINE_BYTES it stays
inline: on the state, and in the run history's `result_ref`. A larger value
is written to the task's `result_storage` (by default
`$HEADRACE_HOME/results`, without an fsync per file) under
`<flow run id>/<task run id>`, and the state keeps where. Either way the
state carries a `ResultRef`, so a result the engine released from memory is
read again when asked for.

Persisting is on unless the task says `persist_result=False`, or the flow
does (for the tasks that do not say), or HEADRACE_PERSIST_RESULTS=off.

`ResultRef.record()` is the text the history keeps:
`inline:<serializer>:<base64>` or `file:<serializer>:<path or URL>`.
"""

from __future__ import annotations

import binascii  # base64's own functions, without its module's cost
import os
from collections.abc import Callable

from headrace.errors import ResultUnreadableError
from headrace.results.serializers import PickleSerializer, Serializer, serializer_named

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

    from headrace.results.storage import Storage

INLINE_BYTES = 1024  # a serialised value up to this size is kept inline, not as a file

CACHE_FOLDER = "cache"  # results of cache entries: <storage>/cache/<digest of the key>
PICKLE = PickleSerializer()
_RESULTS = None  # default_storage(), made by the first run that writes a file


def default_storage():
    """$HEADRACE_HOME/results, unsynced (read when first used): where results larger than
    INLINE_BYTES go: one instance, which every file result's ref shares."""
    global _RESULTS
    if _RESULTS is None:
        from headrace.results.storage import LocalStorage

        _RESULTS = LocalStorage(fsync=False)
    return _RESULTS


class ResultRef:
    """How to read a persisted result again: its bytes, or its storage and key; and the
    cache key it was found or written under, if any."""

    __slots__ = ("serializer", "data", "storage", "key", "cache_key")

    def __init__(self, serializer: Serializer, data: bytes | None = None,
                 storage: Storage | None = None, key: str | None = None):  # fmt: skip
        self.serializer, self.data, self.storage, self.key = serializer, data, storage, key
        self.cache_key: str | None = None

    def load(self) -> Any:
        """The value; ResultUnreadableError when its file went or does not read."""
        try:
            data = self.data if self.data is not None else self.storage.read(self.key)
            return self.serializer.loads(data)
        except Exception as exc:
            where = "inline" if self.data is not None else self.storage.locate(self.key)
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ResultUnreadableError(
                f"The persisted result at {where} cannot be read ({type(exc).__name__}: "
                f"{detail}): it was deleted or damaged."
            ) from exc

    @classmethod
    def parse(cls, text: str, serializer: Serializer | None = None) -> ResultRef:
        """The ref a `record()` text names. `serializer` is used when it is the one named
        (it may carry read options the name does not)."""
        kind, name, rest = text.split(":", 2)
        if serializer is None or serializer.name != name:
            serializer = serializer_named(name)
        if kind == "inline":
            return cls(serializer, binascii.a2b_base64(rest))
        if kind != "file":
            raise ValueError(f"not a result reference: {text[:80]!r}")
        from headrace.results.storage import storage_at

        storage, key = storage_at(rest)
        return cls(serializer, None, storage, key)

    def record(self) -> str:
        if self.data is not None:
            encoded = binascii.b2a_base64(self.data, newline=False).decode("ascii")
            return f"inline:{self.serializer.name}:{encoded}"
        return f"file:{self.serializer.name}:{self.storage.locate(self.key)}"

    def __repr__(self) -> str:
        where = f"{len(self.data)} bytes inline" if self.data is not None else self.key
        return f"ResultRef({self.serializer!r}, {where})"


def persist(value: Any, serializer: Serializer | None, storage: Storage | None,
            key: str, client_host: str | None = None, data: bytes | None = None,
            ) -> ResultRef:  # fmt: skip
    """Serialise `value` (unless `data` holds its bytes) and keep it inline or write it
    under `key`; raises what the serializer or the storage raises, and
    StorageUnreachableError for a LocalStorage on a host other than `client_host`, the
    flow run's."""
    serializer = serializer or PICKLE
    if data is None:
        data = serializer.dumps(value)
    if len(data) <= INLINE_BYTES:
        return ResultRef(serializer, data)
    from headrace.results.storage import check_reachable

    storage = storage or default_storage()
    check_reachable(storage, client_host)
    storage.write(key, data)
    return ResultRef(serializer, None, storage, key)


def remove_unowned(known: Callable[[str], bool], cached: set[str] = frozenset()) -> int:
    """Delete the persisted results (under the default storage) of flow runs that
    `known(run_id)` says the history no longer has, and the cache's result files that
    no entry's `result_ref` in `cached` names; how many runs' results went."""
    import shutil

    root = default_storage().root
    if not root.is_dir():
        return 0
    removed = 0
    named = {ref.split(":", 2)[2] for ref in cached if ref.startswith("file:")}
    for folder in root.iterdir():
        if folder.name == CACHE_FOLDER:
            for file in folder.iterdir():
                if str(file) not in named:
                    file.unlink(missing_ok=True)
        elif folder.is_dir() and not known(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def remove_results_of(run_ids: list[str]) -> None:
    """Delete the persisted results (under the default storage) of these flow runs."""
    import shutil

    root = default_storage().root
    for run_id in run_ids:
        if run_id and "/" not in run_id and run_id not in (".", "..", CACHE_FOLDER):
            shutil.rmtree(root / run_id, ignore_errors=True)


_ON, _OFF = ("", "on", "true", "1", "yes"), ("off", "false", "0", "no")


def persist_default(option: bool | None, inherited: bool = True) -> bool:
    """Whether a flow run's tasks persist their results unless they say: off when
    HEADRACE_PERSIST_RESULTS=off, else the flow's `persist_result`, else `inherited`
    (a subflow's parent's)."""
    setting = os.environ.get("HEADRACE_PERSIST_RESULTS", "").strip().lower()
    if setting in _OFF:
        return False
    if setting not in _ON:
        raise ValueError(f"HEADRACE_PERSIST_RESULTS={setting!r} is not a setting; use on or off.")
    if option not in (None, True, False):
        raise TypeError(f"persist_result must be True, False or None, got {option!r}.")
    return inherited if option is None else option
