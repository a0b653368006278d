"""Result storage: where persisted results and targets live.

A storage maps a key (a relative path such as "data_1.csv"; an absolute one
for `LocalStorage` is used as it is) to bytes: `write(key, data)`,
`read(key)`, `exists(key)`, `delete(key)`, and `locate(key)`, the path or
URL shown in messages. Writes are atomic: a reader sees the old bytes or
the new ones, never a part, and a crash mid-write leaves no partial file
under the key.

- `LocalStorage(path)`: a directory, `$HEADRACE_HOME/results` by default
  (read when first used, so a test's or a notebook's HEADRACE_HOME counts).
  A write goes to a temporary file in the same directory, is fsynced, then
  renamed over the key; the directory is fsynced after the rename.
- `FSSpecStorage(url)`: any fsspec URL (`s3://bucket/results`,
  `gcs://...`, `memory://...`, `file:///...`). On a local filesystem it
  writes as LocalStorage does; on object stores one PUT is already atomic.
  Needs `fsspec` (installed with the `dask` extra, or its own `fsspec`).

Both are small picklable objects: process and Dask workers write results
themselves. A `LocalStorage` path is a path on the machine that writes, so a
worker on another host than the flow run's refuses to write to one
(`StorageUnreachableError`, naming FSSpecStorage), unless it is declared
`LocalStorage(path, shared=True)`: a filesystem every host mounts at that path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from headrace._optional import require
from headrace._pid import HOST
from headrace.errors import StorageUnreachableError


def check_reachable(storage: Storage, client_host: str | None) -> None:
    """Refuse a LocalStorage write on a host other than the flow run's (see above)."""
    if client_host is None or client_host == HOST or not isinstance(storage, LocalStorage):
        return
    if storage.shared:
        return
    raise StorageUnreachableError(
        f"This worker runs on host {HOST!r}, where {storage!r} writes to {HOST}'s own disk; "
        f"the flow run on host {client_host!r} cannot read it there. Give the task or flow "
        "a storage both reach: result_storage=FSSpecStorage('s3://bucket/results') (any "
        "fsspec URL), or LocalStorage(path, shared=True) for a filesystem every host mounts."
    )


class Storage:
    """Where results live (see the module docstring)."""

    def write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def locate(self, key: str) -> str:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), repr(self)))


def _write_atomically(path: Path, data: bytes, fsync: bool = True) -> None:
    """Temp file beside `path`, fsync, rename over it, fsync the directory (without
    `fsync`, the rename alone: atomic for every process, not across a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if not fsync:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class LocalStorage(Storage):
    """`fsync=False` skips the two syncs of each write (about 0.7 ms on the development
    machine): what headrace persists by default does, since a result a power cut damaged
    is read as missing and computed again."""

    def __init__(self, path: str | os.PathLike | None = None, fsync: bool = True,
                 shared: bool = False):  # fmt: skip
        self.path = None if path is None else os.fspath(path)
        self.fsync = fsync
        self.shared = shared  # on a filesystem every host mounts at this path

    @property
    def root(self) -> Path:
        if self.path is not None:
            return Path(self.path).expanduser()
        from headrace.store import home

        return home() / "results"

    def _file(self, key: str) -> Path:
        return self.root / key

    def write(self, key: str, data: bytes) -> None:
        _write_atomically(self._file(key), data, self.fsync)

    def read(self, key: str) -> bytes:
        return self._file(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._file(key).unlink()

    def locate(self, key: str) -> str:
        return str(self._file(key))

    def __repr__(self) -> str:
        return f"LocalStorage({self.path!r})" if self.path is not None else "LocalStorage()"


class FSSpecStorage(Storage):
    def __init__(self, url: str, **storage_options):
        require("fsspec", "fsspec", "FSSpecStorage")
        self.url = url.rstrip("/")
        self.storage_options = storage_options

    def _fs(self):
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root

    def _where(self, key: str) -> tuple:
        fs, root = self._fs()
        return fs, f"{root}/{key}"

    def _is_local(self, fs) -> bool:
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        return "file" in protocols or "local" in protocols

    def write(self, key: str, data: bytes) -> None:
        fs, path = self._where(key)
        if self._is_local(fs):
            _write_atomically(Path(path), data)
        else:
            fs.pipe_file(path, data)

    def read(self, key: str) -> bytes:
        fs, path = self._where(key)
        return fs.cat_file(path)

    def exists(self, key: str) -> bool:
        fs, path = self._where(key)
        return fs.isfile(path)

    def delete(self, key: str) -> None:
        fs, path = self._where(key)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def locate(self, key: str) -> str:
        return f"{self.url}/{key}"

    def __repr__(self) -> str:
        return f"FSSpecStorage({self.url!r})"


def storage_at(location: str) -> tuple[Storage, str]:
    """(storage, key) that read the file a `locate()` named: a path or an fsspec URL."""
    if "://" in location:
        parent, _, key = location.rpartition("/")
        return FSSpecStorage(parent), key
    path = Path(location)
    return LocalStorage(path.parent, fsync=False), path.name
