"""Tasks: the unit of work, and how calling one inside `with Flow(...)` builds a graph.

A `Task` wraps a function (`@task`) or a subclass's `run` method. Outside
any flow a task call is a plain function call. Inside `with Flow(...)`:

- `t(a, b=x)` adds a *node*, a copy of `t` bound to the flow, and returns
  it; nothing runs. Arguments that are tasks become edges; other values are
  constants; lists, tuples, sets and dicts holding tasks are collected by a
  small node of their own.
- `t.map(...)` adds a mapped node: every argument is iterated unless wrapped
  in `unmapped`; `upstream_tasks=` entries are mapped too unless `unmapped`.
- `node[key]` adds a node that indexes the result; with `nout=N`,
  `a, b = t(...)` unpacks into N such nodes.

A class-based task subclasses `Task` and defines `run(self, ...)`. A `run`
argument that a call leaves out is taken from the instance attribute of the
same name when that attribute is set (not None), so construction arguments
are defaults that calls override.

This module is the graph layer: it must not import the engine or the store.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import functools
import inspect
import operator
from collections.abc import Callable, Iterator

from headrace import _build
from headrace.edges import flatten, unmapped
from headrace.errors import FlowBuildError, MappingError, ReservedArgumentError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_MISSING = inspect.Parameter.empty


def _normalize_retry_delay(value: Any) -> Callable[[int], float]:
    """Turn seconds, a timedelta, a list (per attempt; the last repeats) or a
    callable(attempt) into a function from attempt number (1-based) to seconds."""

    def seconds(v: Any) -> float:
        if isinstance(v, datetime.timedelta):
            return v.total_seconds()
        if isinstance(v, int | float) and v >= 0:
            return float(v)
        raise ValueError(
            f"retry_delay must be seconds >= 0, a timedelta, a list of them, or a "
            f"callable(attempt); got {v!r}"
        )

    if callable(value):
        return lambda attempt: seconds(value(attempt))
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("retry_delay list is empty; give at least one delay")
        delays = [seconds(v) for v in value]
        return lambda attempt: delays[min(attempt, len(delays)) - 1]
    fixed = seconds(value if value is not None else 0)
    return lambda attempt: fixed


def check_retries_and_timeout(retries: Any, timeout: Any) -> tuple[int, float | None]:
    """Validate the retry count and the timeout (seconds or a timedelta) of a task or flow."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise TypeError(
            f"timeout must be seconds (a number > 0) or a datetime.timedelta, got "
            f"{timeout!r} ({type(timeout).__name__})"
        )
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return retries, timeout


def _refuse_upstream_tasks(upstream_tasks) -> None:
    if upstream_tasks:
        raise TypeError(
            "upstream_tasks= only has a meaning inside `with Flow(...)`; "
            "in a @flow use wait_for=[...]"
        )


class Task:
    """A unit of work. See the module docstring for how calls build graphs.

    Options: `name`, `tags`, `retries`, `retry_delay` (seconds, a timedelta, a
    list per attempt, or a callable(attempt)), `timeout` (seconds),
    `trigger`, `skip_on_upstream_skip`, `nout`, hooks `on_failure` /
    `on_completion`, each a callable or a list of callables taking
    `(task, state)`, where a result lives: `target` (a file name template,
    see `headrace.results.targets`), `serializer`, `result_storage` and
    `persist_result` (see `headrace.results.persist`), and when a run is
    served from the cache: `cache_policy`, `cache_key_fn`, `cache_expiration`,
    `refresh_cache` (see `headrace.cache`).
    """

    def __init__(
        self,
        fn: Callable | None = None,
        *,
        name: str | None = None,
        tags: Any = None,
        retries: int = 0,
        retry_delay: Any = 0,
        timeout: float | datetime.timedelta | None = None,
        trigger: Callable | None = None,
        skip_on_upstream_skip: bool = True,
        nout: int | None = None,
        on_failure: Any = None,
        on_completion: Any = None,
        target: str | None = None,
        serializer: Any = None,
        result_storage: Any = None,
        persist_result: bool | None = None,
        cache_policy: Any = None,
        cache_key_fn: Callable | None = None,
        cache_expiration: float | datetime.timedelta | None = None,
        refresh_cache: bool = False,
    ):
        if fn is None:
            if type(self).run is Task.run:
                raise TypeError(
                    f"{type(self).__name__} has no work to do: pass a function "
                    "(`@task` or `Task(fn)`) or define `run(self, ...)` in a subclass"
                )
            fn = self.run
        if not callable(fn):
            raise TypeError(f"Task needs a callable, got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(self).__name__
        if self.name == "run" and fn == getattr(self, "run", None):
            self.name = type(self).__name__
        self.tags = frozenset([tags] if isinstance(tags, str) else (tags or ()))
        self.retries, self.timeout = check_retries_and_timeout(retries, timeout)
        self.retry_delay = retry_delay
        self._retry_delay_fn = _normalize_retry_delay(retry_delay)
        if trigger is not None and not callable(trigger):
            raise TypeError(f"trigger must be a callable of upstream states, got {trigger!r}")
        self.trigger = trigger
        self.skip_on_upstream_skip = skip_on_upstream_skip
        if nout is not None and (not isinstance(nout, int) or nout < 1):
            raise ValueError(f"nout must be an int >= 1, got {nout!r}")
        self.nout = nout
        self.on_failure = _as_hooks(on_failure)
        self.on_completion = _as_hooks(on_completion)
        self.target, self.serializer, self.result_storage = target, serializer, result_storage
        self.persist_result = persist_result  # None: as the flow says (on by default)
        self.cache_policy, self.cache_key_fn = cache_policy, cache_key_fn
        self.cache_expiration, self.refresh_cache = cache_expiration, refresh_cache
        # Node fields: set on the copies that `with Flow(...)` creates.
        self.flow = None
        self.mapped = False
        self.slug: str | None = None
        self.constants: dict[str, Any] = {}
        self.mapped_constants: frozenset[str] = frozenset()
        self.template: Task = self
        if inspect.isfunction(fn):
            functools.update_wrapper(self, fn, updated=())
        _refuse_reserved(self)
        _check_result_options(self)

    def run(self, *args, **kwargs):  # overridden by class-based tasks
        raise NotImplementedError

    def retry_delay_seconds(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        return self._retry_delay_fn(attempt)

    @property
    def retry_delays(self) -> Callable[[int], float]:
        """`retry_delay_seconds` as a function that needs no task (picklable alone)."""
        return self._retry_delay_fn

    # -- signature ---------------------------------------------------------
    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    def attribute_defaults(self) -> dict[str, Any]:
        """Run arguments a class-based task takes from its attributes (see module doc)."""
        if self.fn != getattr(self, "run", None) or type(self).run is Task.run:
            return {}
        return {
            p: getattr(self, p)
            for p in self.signature.parameters
            if getattr(self, p, None) is not None and p not in _TASK_ATTRIBUTES
        }

    def bind(self, args: tuple, kwargs: dict, for_map: bool = False) -> dict[str, Any]:
        """Bind a call's arguments to the signature; name the task in any error.

        For a map, defaults taken from attributes come `unmapped`: only what
        the call passes is iterated.
        """
        fast = self._fast_binding
        if fast is not None and len(args) <= len(fast[0]):
            # Plain keyword functions: zip positions to names, check the rest cheaply.
            names, known, required = fast
            arguments = dict(zip(names, args))
            if kwargs:
                if not kwargs.keys().isdisjoint(arguments) or not kwargs.keys() <= known:
                    return self._bind_slowly(args, kwargs, for_map)
                arguments.update(kwargs)
            if required <= arguments.keys():
                return arguments
        return self._bind_slowly(args, kwargs, for_map)

    @functools.cached_property
    def _fast_binding(self) -> tuple | None:
        """(names, name set, required names) when `bind` may skip `inspect`, else None."""
        if not self.takes_plain_keywords or self.attribute_defaults():
            return None
        params = self.signature.parameters
        required = frozenset(n for n, p in params.items() if p.default is _MISSING)
        return tuple(params), frozenset(params), required

    def _bind_slowly(self, args: tuple, kwargs: dict, for_map: bool) -> dict[str, Any]:
        bound = bind_explained(
            self.signature.bind_partial, args, kwargs, FlowBuildError,
            f"Task {self.name!r} was called with arguments it does not take",
            f"{self.name}{self.signature}",
        )  # fmt: skip
        arguments = dict(bound.arguments)
        defaults = self.attribute_defaults()
        for pname, param in self.signature.parameters.items():
            if pname in arguments or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if pname in defaults:
                arguments[pname] = unmapped(defaults[pname]) if for_map else defaults[pname]
            elif param.default is _MISSING:
                raise FlowBuildError(
                    f"Task {self.name!r} is missing argument {pname!r}. "
                    f"Its signature is {self.name}{self.signature}."
                )
        return (
            arguments if self.takes_plain_keywords else _spread_variadic(self.signature, arguments)
        )

    def call_with(self, arguments: dict[str, Any]) -> Any:
        """Call the function with arguments keyed by parameter name."""
        signature = None if self.takes_plain_keywords else self.signature
        return call_with_arguments(self.fn, signature, arguments)

    @functools.cached_property
    def takes_plain_keywords(self) -> bool:
        """Whether every parameter can be passed by keyword (no *args, **kwargs or
        positional-only ones): the fast calling path."""
        kinds = {p.kind for p in self.signature.parameters.values()}
        return not kinds & {
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        }

    # -- calling -----------------------------------------------------------
    def __call__(self, *args, upstream_tasks=None, **kwargs):
        return self._route(args, kwargs, upstream_tasks, mapped=False)

    def _route(self, args: tuple, kwargs: dict, upstream_tasks, mapped: bool):
        """A call or map: a node inside `with Flow(...)`, a task run inside a @flow,
        else a plain call."""
        ctx = _build.current()
        if ctx.flow is not None:
            return self._add_node(ctx, args, kwargs, upstream_tasks, mapped=mapped)
        _refuse_upstream_tasks(upstream_tasks)
        run = _build.function_run.get()
        if run is not None:
            return (run.map if mapped else run.call)(self, args, kwargs)
        if mapped:
            return self._map_plainly(self.bind(args, kwargs, for_map=True))
        return self.call_with(self.bind(args, kwargs))

    def submit(self, *args, **kwargs):
        """In a @flow: start this task run on the flow's executor and return its future."""
        run = _build.function_run.get()
        if run is None:
            raise RuntimeError(
                f"{self.name}.submit() runs a task inside a @flow. Outside one, call the task "
                "directly; inside `with Flow(...)`, call it to add a node."
            )
        return run.submit(self, args, kwargs)

    def map(self, *args, upstream_tasks=None, **kwargs):
        """Run once per item of the arguments (see the module docstring)."""
        given = (*args, *kwargs.values(), *(upstream_tasks or ()))
        if all(isinstance(value, unmapped) for value in given):
            raise MappingError(
                f"{self.name}.map() has nothing to map over: "
                + ("every input is unmapped(...). " if given else "it got no input. ")
                + "Pass at least one list (or a task whose result is a list) unwrapped; to run "
                f"the task once, call it: {self.name}(...)."
            )
        if self._target is not None:
            self._check_mapped_target(args, kwargs)
        return self._route(args, kwargs, upstream_tasks, mapped=True)

    def _check_mapped_target(self, args: tuple, kwargs: dict) -> None:
        try:
            bound = self.signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            return  # the call itself is wrong: binding says so, naming the task
        mapped = {name for name, value in bound.items() if not isinstance(value, unmapped)}
        self._target.check_mapped(mapped, self.name)

    def _map_plainly(self, arguments: dict[str, Any]) -> list:
        """`task.map` outside any flow: the same mapping rules, as a plain loop."""
        fixed, iterated = {}, {}
        for key, value in arguments.items():
            if isinstance(value, unmapped):
                fixed[key] = value.value
            else:
                if isinstance(value, flatten):
                    from headrace.edges import flatten_once

                    value = flatten_once(value.value, key)
                iterated[key] = check_mappable(value, key, self.name)
        n = check_lengths(iterated, self.name)
        return [
            self.call_with({**fixed, **{k: v[i] for k, v in iterated.items()}}) for i in range(n)
        ]

    def _add_node(self, ctx, args, kwargs, upstream_tasks, mapped: bool) -> Task:
        flow = ctx.flow
        arguments = self.bind(args, kwargs, for_map=mapped)
        node = copy.copy(self)
        node.template = self.template
        node.flow = None
        node.slug = None
        node.mapped = mapped
        node.constants = {}
        node.mapped_constants = frozenset()
        node.tags = self.tags | ctx.tags
        flow.add_task(node)
        mapped_constants = set()
        for key, value in arguments.items():
            if flow.add_input(node, key, value, mapped):
                mapped_constants.add(key)
        node.mapped_constants = frozenset(mapped_constants)
        if mapped and len(mapped_constants) > 1:
            check_lengths({k: node.constants[k] for k in mapped_constants}, node.name)
        for upstream in upstream_tasks or ():
            flow.add_input(node, None, upstream, mapped)
        for condition in ctx.conditions:
            flow.add_edge(condition, node)
        return node

    # -- not a block --------------------------------------------------------
    def __enter__(self):
        raise FlowBuildError(
            f"Task {self.name!r} is not a block: `with {self.name}:` has no meaning. "
            f"A conditional block is `with case({self.name}, value):`; to choose among "
            "whole tasks use `switch(condition, {value: task, ...})` or "
            "`ifelse(condition, if_true, if_false)`."
        )

    def __exit__(self, *exc) -> None:  # never reached: __enter__ refuses the block
        return None

    # -- indexing and unpacking --------------------------------------------
    def __getitem__(self, key) -> Task:
        ctx = self._node_context("can only be indexed")
        return GetItem(name=f"{self.name}[{key!r}]")._add_node(ctx, (self, key), {}, None, False)

    def _node_context(self, refused: str) -> _build.BuildContext:
        """Where a node built from this task goes: its flow, else the flow being built."""
        ctx = _build.current()
        flow = self.flow or ctx.flow
        if flow is None:
            raise TypeError(
                f"Task {self.name!r} {refused} inside `with Flow(...)` (or as a node of a "
                "flow), where it becomes a node of its own. Outside a flow, call the task "
                "and work with its value."
            )
        return ctx if ctx.flow is flow else _build.BuildContext(flow=flow)

    # -- operators: each builds a node, as in Prefect 1 ----------------------
    # `__eq__` and `__hash__` stay Python's own, so tasks remain hashable and are
    # compared by identity: use `is_equal` / `is_not_equal` for `==` / `!=`.
    def _operator(self, fn: Callable, *operands) -> Task:
        ctx = self._node_context("operators work only")
        return Operator(fn)._add_node(ctx, operands, {}, None, False)

    def __add__(self, other) -> Task:
        return self._operator(operator.add, self, other)

    def __radd__(self, other) -> Task:
        return self._operator(operator.add, other, self)

    def __sub__(self, other) -> Task:
        return self._operator(operator.sub, self, other)

    def __rsub__(self, other) -> Task:
        return self._operator(operator.sub, other, self)

    def __mul__(self, other) -> Task:
        return self._operator(operator.mul, self, other)

    def __rmul__(self, other) -> Task:
        return self._operator(operator.mul, other, self)

    def __truediv__(self, other) -> Task:
        return self._operator(operator.truediv, self, other)

    def __rtruediv__(self, other) -> Task:
        return self._operator(operator.truediv, other, self)

    def __floordiv__(self, other) -> Task:
        return self._operator(operator.floordiv, self, other)

    def __rfloordiv__(self, other) -> Task:
        return self._operator(operator.floordiv, other, self)

    def __mod__(self, other) -> Task:
        return self._operator(operator.mod, self, other)

    def __rmod__(self, other) -> Task:
        return self._operator(operator.mod, other, self)

    def __pow__(self, other) -> Task:
        return self._operator(operator.pow, self, other)

    def __rpow__(self, other) -> Task:
        return self._operator(operator.pow, other, self)

    def __and__(self, other) -> Task:  # Prefect 1: `a & b` is `a and b`
        return self._operator(and_, self, other)

    def __rand__(self, other) -> Task:
        return self._operator(and_, other, self)

    def __gt__(self, other) -> Task:
        return self._operator(operator.gt, self, other)

    def __ge__(self, other) -> Task:
        return self._operator(operator.ge, self, other)

    def __lt__(self, other) -> Task:
        return self._operator(operator.lt, self, other)

    def __le__(self, other) -> Task:
        return self._operator(operator.le, self, other)

    def is_equal(self, other) -> Task:
        """A node whose result is `self == other`."""
        return self._operator(operator.eq, self, other)

    def is_not_equal(self, other) -> Task:
        """A node whose result is `self != other`."""
        return self._operator(operator.ne, self, other)

    def not_(self) -> Task:
        """A node whose result is `not self`."""
        return self._operator(operator.not_, self)

    def and_(self, other) -> Task:
        """A node whose result is `self and other`."""
        return self._operator(and_, self, other)

    def or_(self, other) -> Task:
        """A node whose result is `self or other`."""
        return self._operator(or_, self, other)

    def __or__(self, other) -> Task:
        """`a | b`: b depends on a's state (Prefect 1's pipe); returns b."""
        self._node_context("can only be piped").flow.set_dependencies(other, upstream_tasks=[self])
        return other

    def __ror__(self, other) -> Task:
        """`other | a`: a depends on other's state; returns a."""
        self._node_context("can only be piped").flow.set_dependencies(self, upstream_tasks=[other])
        return self

    def __iter__(self) -> Iterator[Task]:
        if self.nout is None:
            raise TypeError(
                f"Task {self.name!r} returns one value; to unpack it, "
                f"declare how many with @task(nout=N)."
            )
        return (self[i] for i in range(self.nout))

    def __repr__(self) -> str:
        mapped = " (mapped)" if self.mapped else ""
        return f"<Task: {self.slug or self.name}{mapped}>"

    def with_options(self, **options) -> Task:
        """A copy of this task with some options changed: `name`, `tags`, `retries`,
        `retry_delay`, `timeout` (None unsets it), `trigger`, `skip_on_upstream_skip`,
        `nout`, `on_failure`, `on_completion`, `target`, `serializer`, `result_storage`,
        `persist_result`, `cache_policy`, `cache_key_fn`, `cache_expiration`,
        `refresh_cache`. The task itself is unchanged."""
        new = copy.copy(self)
        for key, value in options.items():
            if key not in _TASK_ATTRIBUTES:
                raise TypeError(
                    f"with_options() got an unknown task option {key!r}; the options are: "
                    + ", ".join(sorted(_TASK_ATTRIBUTES - {"fn", "flow"}))
                )
            setattr(new, key, value)
        if "retries" in options or "timeout" in options:
            new.retries, new.timeout = check_retries_and_timeout(new.retries, new.timeout)
        if "fn" in options:  # what was read from the old function is stale
            for cached in ("signature", "_fast_binding", "takes_plain_keywords"):
                new.__dict__.pop(cached, None)
            _refuse_reserved(new)
        if "on_failure" in options or "on_completion" in options:
            new.on_failure, new.on_completion = (
                _as_hooks(new.on_failure), _as_hooks(new.on_completion)
            )  # fmt: skip
        if "retry_delay" in options:
            new._retry_delay_fn = _normalize_retry_delay(options["retry_delay"])
        if "tags" in options:
            new.tags = frozenset(options["tags"] or ())
        _check_result_options(new)
        new.template = new
        new.flow = None
        return new

    copy = with_options  # Prefect 1's name


def _check_result_options(task: Task) -> None:
    """A target's template names what exists (kept checked, as `task._target`); serializer
    and storage are of their kinds; cache options make one `task._cache` (or None)."""
    task._target = None
    if task.persist_result not in (None, True, False):
        raise TypeError(
            f"Task {task.name!r}: persist_result must be True, False or None (as the flow "
            f"says), got {task.persist_result!r}."
        )
    task._cache = None
    if task.cache_policy is not None or task.cache_key_fn is not None or task.refresh_cache:
        from headrace.cache import CacheOptions

        task._cache = CacheOptions.of(task)
    if task.target is None and task.serializer is None and task.result_storage is None:
        return
    from headrace.results import Serializer, Storage

    if task.target is not None:
        from headrace.results.targets import Target

        task._target = Target(task.target, task.signature, task.name)
    for option, kind in (("serializer", Serializer), ("result_storage", Storage)):
        value = getattr(task, option)
        if value is not None and not isinstance(value, kind):
            raise TypeError(
                f"Task {task.name!r}: {option} must be a headrace.results.{kind.__name__} "
                f"(such as {'PickleSerializer()' if kind is Serializer else 'LocalStorage(path)'}), "
                f"got {value!r}."
            )


def _refuse_reserved(task: Task) -> None:
    """`wait_for` is an option of every task call in a function flow, not a parameter."""
    try:
        params = inspect.signature(task.fn).parameters
    except (TypeError, ValueError):
        return
    if "wait_for" in params:
        raise ReservedArgumentError(
            f"Task {task.name!r} has a parameter named 'wait_for', which is reserved: every "
            "task call takes wait_for=[...] (runs to wait for). Rename the parameter."
        )


_TASK_ATTRIBUTES = frozenset(
    {
        "name",
        "tags",
        "retries",
        "retry_delay",
        "timeout",
        "trigger",
        "skip_on_upstream_skip",
        "nout",
        "target",
        "serializer",
        "result_storage",
        "persist_result",
        "cache_policy",
        "cache_key_fn",
        "cache_expiration",
        "refresh_cache",
        "on_failure",
        "on_completion",
        "fn",
        "flow",
        "mapped",
        "slug",
        "constants",
        "mapped_constants",
        "template",
    }
)


def bind_explained(bind: Callable, args: tuple, kwargs: dict, error: type, what: str, shape: str):
    """`bind(*args, **kwargs)`, or `error` saying `what` went wrong and the signature `shape`."""
    try:
        return bind(*args, **kwargs)
    except TypeError as exc:
        raise error(f"{what}: {exc}. Its signature is {shape}.") from None


def call_with_arguments(
    fn: Callable, signature: inspect.Signature | None, arguments: dict[str, Any]
) -> Any:
    """Call `fn` with arguments keyed by parameter name.

    `signature` is None when every parameter can be passed by keyword (the
    fast path). Otherwise items of `*args` come keyed `args[0]`, `args[1]`
    ... (each may be an edge of its own), and keys that name no parameter go
    to `**kwargs`.
    """
    if signature is None:
        return fn(**arguments)
    params = signature.parameters
    args: list = []
    kwargs: dict = {}
    star = next((p for p in params.values() if p.kind is p.VAR_POSITIONAL), None)
    before_star = star is not None
    for pname, param in params.items():
        if param is star:
            before_star = False
            prefix = pname + "["
            items = [
                (int(k[len(prefix) : -1]), v) for k, v in arguments.items() if k.startswith(prefix)
            ]
            args.extend(v for _, v in sorted(items, key=lambda kv: kv[0]))
        elif param.kind is param.VAR_KEYWORD:
            kwargs.update((k, v) for k, v in arguments.items() if k not in params and "[" not in k)
        elif param.kind is param.POSITIONAL_ONLY or before_star:
            # Before *args, arguments must go by position; fill skipped defaults to keep places.
            if pname in arguments or param.default is not _MISSING:
                args.append(arguments.get(pname, param.default))
        elif pname in arguments:
            kwargs[pname] = arguments[pname]
    return fn(*args, **kwargs)


def _spread_variadic(signature: inspect.Signature, arguments: dict[str, Any]) -> dict[str, Any]:
    """Key each `*args` item as `args[i]` and each `**kwargs` item by its name."""
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        param = signature.parameters[key]
        if param.kind is param.VAR_POSITIONAL:
            out.update((f"{key}[{i}]", item) for i, item in enumerate(value))
        elif param.kind is param.VAR_KEYWORD:
            out.update(value)
        else:
            out[key] = value
    return out


def _as_hooks(value) -> tuple:
    if value is None:
        return ()
    hooks = tuple(value) if isinstance(value, list | tuple) else (value,)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"a hook must be callable(task, state), got {hook!r}")
    return hooks


def task(fn: Callable | None = None, **options) -> Task | Callable[[Callable], Task]:
    """Make a function a task: `@task` or `@task(name=..., retries=..., ...)`."""
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)


def check_mappable(value: Any, key: str | None, task_name: str) -> list | tuple | range:
    """Return `value` as an indexable sequence, or raise a MappingError naming the input."""
    what = f"input {key!r}" if key else "an upstream task's result"
    if isinstance(value, str | bytes):
        raise MappingError(
            f"Task {task_name!r} cannot map over {what}: it is a {type(value).__name__}, "
            "and mapping over characters is almost never meant. Wrap it in unmapped(...) "
            "to pass it whole, or pass a list."
        )
    if isinstance(value, list | tuple | range):
        return value
    if isinstance(value, set | frozenset):
        raise MappingError(
            f"Task {task_name!r} cannot map over {what}: a {type(value).__name__} has no "
            "order, so the children would not match their items from run to run. Pass "
            "sorted(...) or a list."
        )
    if isinstance(value, dict) or not hasattr(value, "__iter__"):
        raise MappingError(
            f"Task {task_name!r} cannot map over {what}: a {type(value).__name__} is not a "
            "sequence. Pass a list, or wrap the value in unmapped(...) to pass it whole."
        )
    return list(value)


def check_lengths(sequences: dict[str | None, Any], task_name: str) -> int:
    """The common length of the mapped inputs, or a MappingError naming each length
    (`Task.map` refuses a map with none)."""
    lengths = {key: len(seq) for key, seq in sequences.items()}
    distinct = set(lengths.values())
    if len(distinct) > 1:
        shown = ", ".join(
            f"{key if key else 'upstream_tasks'}={n}" for key, n in sorted(lengths.items(), key=str)
        )
        raise MappingError(
            f"Task {task_name!r} maps over inputs of unequal lengths: {shown}. "
            "Mapped inputs must have the same length; wrap inputs that should be "
            "passed whole in unmapped(...)."
        )
    return distinct.pop() if distinct else 1


@contextlib.contextmanager
def tags(*names: str):
    """Add these tags to every task called inside the block."""
    token = _build.push(tags=_build.current().tags | frozenset(names))
    try:
        yield
    finally:
        _build.pop(token)


# -- small tasks the graph layer adds on the user's behalf -------------------


class Constant(Task):
    """A plain value given where a task is expected (`upstream_tasks=[5]`), as in Prefect 1."""

    def __init__(self, value: Any, **kwargs):
        self.value = value
        shown = repr(value)
        name = shown if len(shown) <= 20 else f"Constant[{type(value).__name__}]"
        super().__init__(name=kwargs.pop("name", name), **kwargs)

    def run(self):
        return self.value


def and_(left, right):
    return left and right


def or_(left, right):
    return left or right


class Operator(Task):
    """`a + b`, `a > 2`, `a.is_equal(b)` ...: an operator applied to its operands' results."""

    def __init__(self, fn: Callable, **kwargs):
        self.operator = fn
        super().__init__(name=kwargs.pop("name", fn.__name__), **kwargs)

    def run(self, *operands):
        return self.operator(*operands)


class GetItem(Task):
    """`node[key]`: the item of an upstream result."""

    def run(self, value, key):
        return value[key]


class CollectList(Task):
    """A list literal whose items include tasks."""

    def run(self, *items):
        return list(items)


class CollectTuple(Task):
    def run(self, *items):
        return tuple(items)


class CollectSet(Task):
    def run(self, *items):
        return set(items)


class CollectDict(Task):
    """A dict literal whose keys or values include tasks."""

    def run(self, keys, values):
        return dict(zip(keys, values))
