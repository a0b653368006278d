"""A task run's cache, in the worker: key, look up, claim, write.

key       the task's `CacheOptions` make the key from the run's arguments
          (a policy, or the task's cache_key_fn); an input that has no
          canonical encoding fails the run, naming the input.
look_up   an unexpired entry whose result reads gives `Cached`, and the
          task does not run. A miss is logged with why: "no entry",
          "expired", "result unreadable" (a warning), or the parts of the
          key that changed since the task's last entry ("inputs changed: x").
claim     on a miss the run holds its key across processes while it
          computes, and looks again once it holds it: a run that waited for
          another finds that one's entry instead of running.
write     the value is persisted (a cache entry needs its result, whatever
          persist_result the flow has) and the entry put, at once.

The entries live in the store at the flow run's database URL
(`store.cache`), one `CacheStore` per URL per process.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

from headrace.cache import digests
from headrace.errors import ResultUnreadableError, StorageUnreachableError
from headrace.results.persist import CACHE_FOLDER, ResultRef, persist
from headrace.states import Cached, Failed, State
from headrace.store.cache import CacheEntry

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_STORES: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def cache_store(url: str, clock=None):
    """This process's CacheStore at `url` (opened on first use; `clock` only then)."""
    key = (url, os.getpid())
    store = _STORES.get(key)
    if store is None:
        with _LOCK:
            store = _STORES.get(key)
            if store is None:
                from headrace.store import open_cache

                store = _STORES[key] = open_cache(url, clock)
    return store


class CachePlan:
    """One task run's cache key, and what its lookups found."""

    __slots__ = ("spec", "key", "parts", "store", "logger", "flow_ctx", "run_id", "why")

    def __init__(self, spec, key: str, parts, store, logger, flow_ctx, run_id):
        self.spec, self.key, self.parts, self.store = spec, key, parts, store
        self.logger, self.flow_ctx, self.run_id = logger, flow_ctx, run_id
        self.why = "no entry"  # of the last miss

    def look_up(self, quiet: bool = False) -> State | None:
        """Cached from an entry that holds, or None (the reason kept in `why`)."""
        entry = self.store.get(self.key)
        if entry is None:
            self.why = "no entry" if quiet else self._changed() or "no entry"
            return None
        if entry.expired(self.store.clock()):
            self.why = "expired"
            return None
        try:
            ref = ResultRef.parse(entry.result_ref, self.spec.serializer)
            value = ref.load()
        except (ResultUnreadableError, ValueError) as exc:  # gone, damaged, or not a ref
            self.why = "result unreadable"
            if not quiet:
                self.logger.warning("Cache entry %s… is unusable, so the task runs again: %s",
                                    self.key[:12], exc)  # fmt: skip
            return None
        ref.cache_key = self.key
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created))
        cached = Cached(f"Read from the cache (written by task run {entry.task_run_id} at "
                        f"{written}).", value)  # fmt: skip
        cached.ref = ref
        return cached

    def _changed(self) -> str | None:
        """Which parts of the key differ from the task's newest entry, if it has one."""
        if not self.parts:
            return None
        last = self.store.latest(self.spec.name)
        if last is None or not last.parts:
            return None
        mine = digests(self.parts)
        changed = [n for n in mine.keys() | last.parts.keys() if mine.get(n) != last.parts.get(n)]
        inputs = sorted(n[len("input ") :] for n in changed if n.startswith("input "))
        others = sorted(n for n in changed if not n.startswith("input") and n != "inputs")
        said = ([f"inputs changed: {', '.join(inputs)}"] if inputs else []) + [
            f"{n} changed" for n in others
        ]
        return "; ".join(said) or None

    def missed(self) -> None:
        self.logger.info("Cache miss (%s): running the task.", self.why)

    def write(self, state: State) -> State:
        """Persist the value and put the entry; a value that cannot be written warns and
        leaves the run's state as it is (not cached)."""
        spec = self.spec
        name = hashlib.sha256(self.key.encode()).hexdigest()
        try:
            ref = persist(state._value, spec.serializer, spec.storage, f"{CACHE_FOLDER}/{name}",
                          self.flow_ctx.host)  # fmt: skip
            now = self.store.clock()
            expires = None if spec.cache.expiration is None else now + spec.cache.expiration
            self.store.put(
                CacheEntry(
                    self.key,
                    spec.name,
                    ref.record(),
                    digests(self.parts),
                    self.flow_ctx.flow_run_id,
                    self.run_id,
                    now,
                    expires,
                )  # fmt: skip
            )
        except StorageUnreachableError as exc:
            return Failed(str(exc), exception=exc)
        except Exception as exc:
            self.logger.warning("The result of task %r was not cached (%s: %s).",
                                spec.name, type(exc).__name__, exc)  # fmt: skip
            state.message = f"{state.message} Not cached ({type(exc).__name__}: {exc})."
            return state
        ref.cache_key = self.key
        state.ref = ref
        return state


def plan_cache(spec, arguments: dict[str, Any], flow_ctx, logger, run_id: str):
    """(the run's CachePlan or None, a state decided already): Failed for a key that
    cannot be made, None when the run has no key (NO_CACHE, cache_key_fn gave None)."""
    from headrace.engine.context import context

    try:
        key, parts = spec.cache.key(spec.fn, arguments, flow_ctx.parameters, context)
    except Exception as exc:
        return None, Failed(f"No cache key for task {spec.name!r}: {exc}", exception=exc)
    if key is None:
        return None, None
    store = cache_store(flow_ctx.cache_url)
    return CachePlan(spec, key, parts, store, logger, flow_ctx, run_id), None
