"""Results that outlive the process: serializers, storage and task targets.

`serializers` turn a value into bytes and back; `storage` keeps bytes under
a key, atomically; `targets` name the file a task's result lives in, from a
template such as "data_{id}.csv". The engine uses them in a task run's
pipeline (`engine.task_run`): a target that exists and reads makes the run
`Cached` without running; otherwise the task runs and its result is written
there.
"""

from headrace.results.serializers import (
    JSONSerializer,
    PandasSerializer,
    PickleSerializer,
    Serializer,
)
from headrace.results.storage import FSSpecStorage, LocalStorage, Storage

__all__ = [
    "FSSpecStorage",
    "JSONSerializer",
    "LocalStorage",
    "PandasSerializer",
    "PickleSerializer",
    "Serializer",
    "Storage",
]
