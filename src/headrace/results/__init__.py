"""Results that outlive the process: serializers, storage and task targets.

`serializers` turn a value into bytes and back; `storage` keeps bytes under
a key, atomically; `targets` name the file a task's result lives in, from a
template such as "data_{id}.csv". The engine uses them in a task run's
pipeline (`engine.task_run`): a target that exists and reads makes the run
`Cached` without running; otherwise the task runs and its result is written
there.

The names below are imported from their module when first asked for: a run
whose results stay inline never loads the storage module.
"""

_HOMES = {
    "JSONSerializer": "serializers",
    "PandasSerializer": "serializers",
    "PickleSerializer": "serializers",
    "Serializer": "serializers",
    "FSSpecStorage": "storage",
    "LocalStorage": "storage",
    "Storage": "storage",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'headrace.results' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"headrace.results.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
