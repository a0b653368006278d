"""Run logs: the console lines of the engine and `get_run_logger()`.

Lines look like the seeds show them:

    15:49:59.836 | INFO    | headrace.engine - Created flow run 'adept-capuchin' for flow 'my-flow'
    15:49:59.936 | INFO    | Flow run 'adept-capuchin' - Created task run 'add_one-0' for task 'add_one'
    15:49:59.971 | INFO    | Task run 'add_one-0' - Finished in state Completed()

The console handler is installed on the `headrace` logger the first time a
run starts, unless that logger already has handlers (yours win). Level
and format come from HEADRACE_LOGGING_LEVEL (default INFO) and
HEADRACE_LOGGING_FORMAT. `log_prints=True` on a flow or task sends its
`print` calls to the run logger.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import logging
import os
import sys
import traceback

from headrace.engine.context import flow_run_var, task_run_var
from headrace.errors import ContextError

ROOT = logging.getLogger("headrace")
ENGINE = logging.getLogger("headrace.engine")
FLOW_RUNS = logging.getLogger("headrace.flow_runs")
TASK_RUNS = logging.getLogger("headrace.task_runs")

DEFAULT_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (tests and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _LabelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "run_label"):
            record.run_label = record.name
        return super().format(record)


def run_record(record: logging.LogRecord):
    """The history's LogRecord of a line logged for a run; None for a line of no run."""
    flow_run_id = getattr(record, "flow_run_id", None)
    if flow_run_id is None:
        ctx = flow_run_var.get()
        if ctx is None:
            return None  # not a run's line
        flow_run_id = ctx.flow_run_id
    from headrace.store.records import LogRecord

    message = record.getMessage()
    if record.exc_info:
        message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return LogRecord(
        flow_run_id,
        getattr(record, "task_run_id", None),
        record.levelno,
        record.created,
        getattr(record, "run_label", record.name),
        message,
    )


class StoreHandler(logging.Handler):
    """Records every line logged for a run in the run history."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            found = run_record(record)
            if found is not None:
                from headrace.store import default_recorder

                default_recorder().log(found)
        except Exception:
            self.handleError(record)


# -- lines logged in a worker process (ProcessExecutor, Dask), sent back with the task run -

captured_var: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "headrace_captured_logs", default=None
)


class CaptureHandler(logging.Handler):
    """Keeps a run's lines in the list `captured_var` holds (one per task run running here)."""

    def emit(self, record: logging.LogRecord) -> None:
        kept = captured_var.get()
        if kept is None:
            return
        try:
            found = run_record(record)
            if found is not None:
                kept.append(found)
        except Exception:
            self.handleError(record)


_capturing = False


def capture_here() -> None:
    """In a worker process: keep run lines for sending back with the run (see
    `captured_var`), instead of printing or recording them here. Handlers a forked worker
    inherited from its parent are dropped: the parent records and shows the lines."""
    global _capturing, _configured
    if _capturing:
        return
    _capturing = _configured = True  # (configure() must not add its handlers here later)
    for handler in list(ROOT.handlers):
        ROOT.removeHandler(handler)
    ROOT.setLevel(min(_level("HEADRACE_LOGGING_LEVEL"), _level("HEADRACE_HISTORY_LOGGING_LEVEL")))
    ROOT.addHandler(CaptureHandler())
    ROOT.propagate = False


def replay(lines) -> None:
    """In the flow's process: lines a worker kept (LogRecord fields), into the history and
    onto the console, in order, as if they had been logged here."""
    from headrace.store import default_recorder
    from headrace.store.records import LogRecord

    recorder = default_recorder()
    shown = [h for h in ROOT.handlers if not isinstance(h, StoreHandler)]
    for fields in lines:
        record = LogRecord(*fields)
        recorder.log(record)
        if shown and TASK_RUNS.isEnabledFor(record.level):
            line = logging.LogRecord(TASK_RUNS.name, record.level, "", 0, record.message,
                                     None, None)  # fmt: skip
            line.created, line.msecs = record.time, (record.time % 1) * 1000
            line.run_label = record.logger
            for handler in shown:
                if record.level >= handler.level:
                    handler.handle(line)


@contextlib.contextmanager
def kept_lines():
    """In a worker: the block's run lines, kept (see `capture_here`). Yields the list the
    lines will be in, as plain tuples once the block ends, for any transport."""
    kept: list = []
    token = captured_var.set(kept)
    try:
        yield kept
    finally:
        captured_var.reset(token)
        kept[:] = [record.astuple() for record in kept]


_configured = False


def configure() -> None:
    """Install the handlers once (idempotent, cheap after the first call)."""
    global _configured
    if _configured:
        return
    _configured = True
    # The console and the history filter on their own levels: one never hides the other's.
    level, kept = _level("HEADRACE_LOGGING_LEVEL"), _level("HEADRACE_HISTORY_LOGGING_LEVEL")
    ROOT.setLevel(min(level, kept))
    store_handler = StoreHandler()
    store_handler.setLevel(kept)
    ROOT.addHandler(store_handler)
    if any(not isinstance(h, StoreHandler) for h in ROOT.handlers):
        return
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(
        _LabelFormatter(os.environ.get("HEADRACE_LOGGING_FORMAT", DEFAULT_FORMAT), "%H:%M:%S")
    )
    ROOT.addHandler(handler)
    ROOT.propagate = False


def _level(variable: str) -> int:
    given = os.environ.get(variable, "INFO")
    level = logging.getLevelName(given.strip().upper())
    if not isinstance(level, int):
        raise ValueError(
            f"{variable}={given!r} is not a log level; use DEBUG, INFO, WARNING, ERROR or CRITICAL."
        )
    return level


class RunLogger(logging.LoggerAdapter):
    """A logger whose lines name the run: "Flow run 'x'" or "Task run 'y'"."""

    def __init__(self, logger: logging.Logger, label: str, flow_run_id=None, task_run_id=None):
        extra = {"run_label": label, "flow_run_id": flow_run_id, "task_run_id": task_run_id}
        super().__init__(logger, extra)

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return msg, kwargs


def flow_logger(run_name: str, flow_run_id: str | None = None) -> RunLogger:
    return RunLogger(FLOW_RUNS, f"Flow run {run_name!r}", flow_run_id)


def task_logger(
    run_name: str, task_run_id: str | None = None, flow_run_id: str | None = None
) -> RunLogger:
    """A task run's logger. Pass `flow_run_id` when logging off the run's own thread
    (a callback, the core), where the current flow run is not in the context."""
    return RunLogger(TASK_RUNS, f"Task run {run_name!r}", flow_run_id, task_run_id)


def get_run_logger() -> RunLogger:
    """The logger of the current task run, else of the current flow run."""
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        return task_logger(task_ctx.task_run_name, task_ctx.task_run_id)
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return flow_logger(flow_ctx.flow_run_name, flow_ctx.flow_run_id)
    raise ContextError(
        "get_run_logger() was called outside a flow or task run: there is no run to log to. "
        "Call it inside a @flow or @task function, or use logging.getLogger(...)."
    )


def state_label(state) -> str:
    """`Completed()`, `Failed('message')`: how lifecycle lines show a state."""
    if state.is_completed() and state.message in (None, "Task run succeeded."):
        return "Completed()"
    return f"{state.name}({state.message!r})" if state.message else f"{state.name}()"


def log_exception(logger: RunLogger, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    logger.error("Encountered exception during execution:\n%s", text)


# -- print to the run logger ----------------------------------------------------------------

log_prints_var: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "headrace_log_prints", default=False
)
_original_print = builtins.print


def _print(*args, sep=" ", end="\n", file=None, flush=False):
    if log_prints_var.get() and file in (None, sys.stdout):
        try:
            get_run_logger().info(sep.join(str(a) for a in args))
            return
        except ContextError:
            pass
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def enable_log_prints() -> None:
    """Route `print` through `_print`, which logs only inside runs with log_prints=True."""
    if builtins.print is not _print:
        builtins.print = _print
