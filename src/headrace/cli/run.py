"""`headrace run FILE.py[:FLOW] --param k=v`: run a graph flow or a @flow function from a file.

The flow runs through `Flow.run` or the @flow call, as in a program; its
final state is printed, and its recorded name is read back through a Reader.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import click

from headrace.cli.shared import safe

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def _parse_params(values: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; a value is JSON when it parses as JSON, else the string itself."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(
                f"{item!r} is not key=value; write e.g. --param n=3 or --param name=alice.",
                param_hint="--param",
            )
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice.", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _load_module(path: Path):
    """Import the file at `path` as a module, its directory first on sys.path (as `python FILE`)."""
    name = path.stem
    if not _free_module_name(name, path):
        # Never shadow another module of that name (json.py, a second flows.py): a later
        # `import json` anywhere in this process would get the user's file.
        safe = re.sub(r"\W", "_", name)
        name = f"headrace_run_{safe}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    module.__headrace_file__ = True  # its flows' runs record FILE.py:NAME (engine.entry)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    try:  # workers of a process or Dask executor cannot import the file: send it by value
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except Exception:
        pass
    return module


def _free_module_name(name: str, path: Path) -> bool:
    """Whether `name` is importable as nothing but the file at `path` (so it can be its name)."""
    if not name.isidentifier():
        return False
    taken = sys.modules.get(name)
    if taken is not None:
        return getattr(taken, "__file__", None) == str(path)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is None or spec.origin == str(path)


def _flows_in(module) -> dict[str, Any]:
    from headrace.flows import Flow
    from headrace.functions import FunctionFlow

    return {
        attr: value
        for attr, value in vars(module).items()
        if isinstance(value, Flow | FunctionFlow) and not attr.startswith("_")
    }


def _describe(attr: str, flow) -> str:
    from headrace.flows import Flow

    style = "graph flow" if isinstance(flow, Flow) else "@flow function"
    return f"{attr} ({style} {flow.name!r})"


def _pick_flow(module, file: str, wanted: str | None):
    flows = _flows_in(module)
    listed = ", ".join(_describe(a, f) for a, f in flows.items()) or "none"
    if wanted is None:
        if len(flows) == 1:
            return next(iter(flows.values()))
        raise click.UsageError(
            f"{file} has {len(flows) or 'no'} flows; name one as {file}:FLOW. Its flows: {listed}."
        )
    if wanted in flows:
        return flows[wanted]
    by_name = [f for f in flows.values() if f.name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if hasattr(module, wanted):
        kind = type(getattr(module, wanted)).__name__
        raise click.UsageError(
            f"{wanted!r} in {file} is not a flow (it is of type {kind}); a flow is a `Flow` "
            f"or a @flow function. Its flows: {listed}."
        )
    raise click.UsageError(f"{file} has no flow named {wanted!r}. Its flows: {listed}.")


@click.command("run")
@click.argument("target", metavar="FILE.py[:FLOW]")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; repeat for more. VALUE is read as JSON when it parses (3, true, "
    '["a","b"]), else as a string.',
)
def run_command(target: str, params: tuple[str, ...]) -> None:
    """Run a flow from a file and print its final state.

    FILE.py is imported as a module (its directory first on sys.path, as
    `python FILE.py` would; its `if __name__ == "__main__":` block does not
    run).

    FLOW is the variable holding a graph `Flow` or a @flow function (or the
    flow's name); it may be left out when the file has one flow. Exits 1
    when the flow run failed.
    """
    file, wanted = split_target(target)
    parameters = _parse_params(params)
    chosen = load_flow(file, wanted)

    from headrace.flows import Flow

    def start():
        if isinstance(chosen, Flow):
            return chosen.run(parameters=parameters)
        chosen.bind_parameters((), parameters)  # bad parameters: a usage error, no run
        return chosen(return_state=True, **parameters)

    report(chosen, start)


def split_target(target: str) -> tuple[str, str | None]:
    """FILE.py[:FLOW] as (FILE.py, FLOW or None)."""
    file, sep, wanted = target.rpartition(":")
    if not sep or not file or "/" in wanted or "\\" in wanted:
        return target, None  # no :FLOW (a colon of a Windows drive is not one)
    return file, wanted or None


def load_flow(file: str, wanted: str | None):
    """The flow `wanted` (or the only one) of the file at `file`, imported as a module."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise click.UsageError(f"No such file: {file}")
    try:
        module = _load_module(path.resolve())
    except Exception as exc:
        import traceback

        shown = "".join(traceback.format_exception(exc)).rstrip()
        raise click.ClickException(f"Importing {file} failed:\n{shown}") from None
    return _pick_flow(module, file, wanted)


def report(chosen, start) -> None:
    """Run `start()` (a flow run of `chosen`, or a coroutine of one), print its final
    state and a function flow's result; exit 1 when it failed."""
    from headrace.errors import HeadraceError, ParameterError
    from headrace.flows import Flow

    try:
        state = start()
        if not isinstance(chosen, Flow) and chosen.is_async:  # a coroutine: run it here
            import asyncio

            state = asyncio.run(state)
        run_id = state.flow_run_id
        run_name = _run_name(run_id)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None
    except HeadraceError as exc:
        raise click.ClickException(str(exc)) from None

    from headrace.engine.logs import state_label

    who = f"Flow run {run_name!r} ({run_id[:8]})" if run_name else "The flow run"
    click.echo(safe(f"{who} finished in state {state_label(state)}"))
    if not isinstance(chosen, Flow) and state.is_successful():
        value = state.result(raise_on_failure=False)
        if value is not None:
            shown = repr(value)
            click.echo(f"Result: {shown if len(shown) <= 200 else shown[:197] + '...'}")
    if state.is_failed():
        sys.exit(1)


def _run_name(run_id: str) -> str | None:
    """The name the history recorded for this run (None when nothing was recorded)."""
    from headrace.store import StoreError, default_recorder, open_reader

    recorder = default_recorder()
    if not recorder.recording:
        return None
    recorder.flush()
    try:
        with open_reader() as reader:
            return reader.flow_run(run_id).name
    except StoreError:
        return None
