"""The user docs are executable claims; these tests hold them to the code.

- docs/concepts.md: every ```python block runs on its own, in a fresh namespace, and
  carries its own assertions, so an example that stops matching its rule fails here.
- docs/coming-from-prefect.md: every code span in the "headrace form" column of the
  "Graph flows (Prefect 0.3 / 1.x)" table must parse as Python, and every headrace name
  in it must resolve: imports import, dotted `headrace.` paths resolve, bare names are
  public names of headrace's modules, attributes exist on headrace's classes, and calls
  bind to the real signatures. Rows whose note says "coming with issue:" are exempt.
- README.md and every page of docs/: no passage that calls something "coming" names, in
  backticks, a class, function or module that the public modules already export.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

from headrace import Flow, Parameter, Task, context
from headrace.errors import ContextError
from headrace.states import FlowState, MappedState, State
from markdown_blocks import python_blocks, table

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONCEPTS = DOCS / "concepts.md"
TRANSLATION = DOCS / "coming-from-prefect.md"
TABLE_TITLE = "Graph flows (Prefect 0.3 / 1.x)"
HEADRACE_COLUMN = "headrace form"
COMING = re.compile(r"coming with issue:", re.IGNORECASE)

# -- concepts.md ----------------------------------------------------------------------


CONCEPT_BLOCKS = python_blocks(CONCEPTS.read_text())

# The rules of DESIGN §4 that concepts.md must cover, each with at least one example.
CONCEPT_SECTIONS = [
    "Mapping",
    "Failure precedence",
    "Throttle",
    "Results are released",
    "start_tasks and task_states",
    "Timeouts",
    "Retries and the injectable clock",
    "Triggers",
]


def test_concepts_has_an_example_for_every_rule():
    with_examples = {heading for heading, _, _ in CONCEPT_BLOCKS}
    missing = [s for s in CONCEPT_SECTIONS if s not in with_examples]
    assert not missing, f"sections of concepts.md without a python example: {missing}"


@pytest.mark.parametrize(
    "code",
    [pytest.param(code, id=f"L{line}-{heading}") for heading, line, code in CONCEPT_BLOCKS],
)
def test_concepts_example_runs(code):
    # A fresh namespace per block: each example must stand alone, as a reader pastes it.
    namespace = {"__name__": "concepts_example"}
    exec(compile(code, str(CONCEPTS), "exec"), namespace)


def test_concepts_examples_check_something():
    # A block without an assertion cannot fail when its rule breaks.
    silent = [line for _, line, code in CONCEPT_BLOCKS if "assert" not in code]
    assert not silent, f"concepts.md blocks without assertions start at lines {silent}"


# -- coming-from-prefect.md: reading the table ------------------------------------------


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


HEADER, ROWS = table(TRANSLATION, TABLE_TITLE)


def _column(name: str) -> int:
    lowered = [h.lower() for h in HEADER]
    assert name in lowered, f"the table has no {name!r} column; columns are {HEADER}"
    return lowered.index(name)


# Constructs of seeds 000-002 that the table must translate (checked in its first column).
SEED_CONSTRUCTS = [
    "from prefect import task, Flow, Parameter",
    "from prefect import unmapped",
    '@task(tags=["web"])',
    'with Flow("xfiles") as flow:',
    'Parameter("bypass", default=False, required=False)',
    "flow.run(parameters=..., return_tasks=[...])",
    "return_tasks=flow.tasks",
    "outer_space.result[dialogue]",
    "state.result[1]",
    "flow_state.result[task]",
    ".map_states",
    'Success("Task run succeeded.")',
    "SynchronousExecutor",
    "LocalExecutor",
    "from prefect.engine.executors import DaskExecutor",
    "from prefect.executors import DaskExecutor",
    "DaskExecutor(processes=True)",
    'throttle={"web": 3}',
    "task_states=scraped_state.result",
    "start_tasks=[",
    "retrieve_url.map(episodes)",
    "upstream_tasks=[unmapped(db)]",
    "with flow:",
    "flow.visualize()",
    "from prefect.tasks.database import SQLiteScript",
    "SQLiteScript(name=",
    "prefect.tasks.map(process_data)(inputs)",
    "from prefect.triggers import all_successful",
    "@task(trigger=all_successful)",
    'prefect.Flow("Conditional Branch")',
    "with condition:",
    "prefect.Switch(condition)",
    "condition.case(",
    "condition.default()",
    "flow.chain(task_1, [task_2, task_3, task_4], final_task)",
    "from prefect.engine.signals import LOOP",
    "raise LOOP(result=...)",
    "prefect.context.task_loop_result",
]


def test_table_translates_every_seed_construct():
    prefect_column = " ".join(cells[0] for _, cells in ROWS)
    missing = [c for c in SEED_CONSTRUCTS if c not in prefect_column]
    assert not missing, f"seed constructs with no row in the table: {missing}"


# -- coming-from-prefect.md: checking names against the code ----------------------------

# Where a bare name in the headrace column may come from, in this order.
NAME_MODULES = [
    "headrace",
    "headrace.states",
    "headrace.signals",
    "headrace.executors",
    "headrace.triggers",
    "headrace.errors",
]

# The seeds' own variables, with the headrace type each has in a translated flow. Any
# other bare name in the headrace column must be a public headrace name.
EXAMPLE_VARIABLES: dict[str, type] = {
    "flow": Flow,
    "outer_space": FlowState,
    "scraped_state": FlowState,
    "flow_state": FlowState,
    "state": State,
    "mapped_state": MappedState,
    "s": State,
    "url": Parameter,
    "bypass": Parameter,
    "db_file": Parameter,
    "dialogue": Task,
    "episodes": Task,
    "db": Task,
    "ep_script": Task,
    "retrieve_url": Task,
    "insert_episode": Task,
    "process_data": Task,
    "condition": Task,
    "task_a": Task,
    "task_b": Task,
    "task_1": Task,
    "task_2": Task,
    "task_3": Task,
    "task_4": Task,
    "final_task": Task,
    "inputs": list,
}
HEADRACE_CLASSES = (Flow, Task, Parameter, State, MappedState, FlowState)


def _resolve_dotted(path: str):
    """Import the longest module prefix of `path`, then getattr the rest."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = _attribute(obj, attr, path)
        return obj
    raise AssertionError(f"{path}: no such module")


def _attribute(obj, attr: str, where: str):
    if obj is context:
        # Reading a run field outside a run raises ContextError: the field exists.
        try:
            return getattr(obj, attr)
        except ContextError:
            return None
        except AttributeError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    if not hasattr(obj, attr):
        raise AssertionError(f"{where}: {obj!r} has no attribute {attr!r}")
    return getattr(obj, attr)


def _bare(name: str):
    for module_name in NAME_MODULES:
        module = importlib.import_module(module_name)
        if not name.startswith("_") and hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"{name!r} is not a public name of {', '.join(NAME_MODULES)}")


def _parse(span: str) -> ast.Module:
    """A table span as Python: decorators lose their `@`, block openers get a body."""
    source = span[1:] if span.startswith("@") else span
    if source.rstrip().endswith(":"):
        source += "\n    pass"
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise AssertionError(f"`{span}` is not valid Python: {exc.msg}") from None


def _bind(fn, call: ast.Call, where: str, method: bool = False) -> None:
    """Check that `call`'s argument shape fits `fn`'s real signature.

    A class's `**kwargs` usually passes options on to its base classes (`Parameter` to
    `Task`), so for a class every keyword must be named by some `__init__` in its MRO.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    args = [None] * (len(call.args) + method)
    kwargs = {k.arg: None for k in call.keywords if k.arg is not None}
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise AssertionError(f"{where}: does not fit {fn.__qualname__}{signature}: {exc}") from None
    if isinstance(fn, type):
        known = _init_keywords(fn)
        unknown = sorted(set(kwargs) - known) if known is not None else []
        assert not unknown, f"{where}: {fn.__name__} takes no option(s) {unknown}"


def _init_keywords(cls: type) -> set[str] | None:
    """Keyword names the constructors of `cls` accept; None when any keyword may pass."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names.update(p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
    return None


class _SpanChecker:
    """Resolve every headrace name one parsed span uses; raise AssertionError if one does not."""

    def __init__(self, span: str, tree: ast.Module):
        self.span = span
        # id(Attribute node) -> what it resolved to: a headrace object, (class, member)
        # for an attribute of an example variable, or None for an unknown value.
        self.resolved: dict[int, object] = {}
        self.bound = {alias.asname or alias.name for alias in _aliases(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.bound.add(node.id)
            elif isinstance(node, ast.ClassDef | ast.FunctionDef):
                self.bound.add(node.name)

    def check(self, node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom | ast.Import):
            self.check_import(node)
        elif isinstance(node, ast.Attribute):
            self.check_attribute(node)
            return
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            self.value_of_name(node.id)
        elif isinstance(node, ast.Call):
            self.check_call(node)
        for child in ast.iter_child_nodes(node):
            self.check(child)

    def check_import(self, node) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] == "headrace", f"`{self.span}` imports {alias.name}"
                importlib.import_module(alias.name)
            return
        assert (node.module or "").split(".")[0] == "headrace", (
            f"`{self.span}` imports from {node.module}, not headrace"
        )
        module = importlib.import_module(node.module)
        for alias in node.names:
            if not hasattr(module, alias.name):
                importlib.import_module(f"{node.module}.{alias.name}")

    def value_of_name(self, name: str):
        """The headrace object a bare name stands for, a class for a variable, or None."""
        if name in self.bound:
            return None
        if name in EXAMPLE_VARIABLES:
            return EXAMPLE_VARIABLES[name]
        if hasattr(builtins, name):
            return None
        return _bare(name)

    def value_of(self, node: ast.AST):
        """Resolve a Name/Attribute chain; None when it is not a chain of names."""
        if isinstance(node, ast.Name):
            if node.id == "headrace":
                return importlib.import_module("headrace")
            return self.value_of_name(node.id)
        if isinstance(node, ast.Attribute):
            self.check_attribute(node)
            return self.resolved.get(id(node))
        return None

    def check_attribute(self, node: ast.Attribute) -> None:
        path = _dotted(node)
        if path and path.startswith("headrace."):
            self.resolved[id(node)] = _resolve_dotted(path)
            return
        base = node.value
        owner = self.value_of(base) if isinstance(base, ast.Name | ast.Attribute) else None
        if isinstance(owner, tuple):  # an attribute of a variable's member: type unknown
            owner = None
        if owner is None:
            # An expression such as `state[t].map_states`: check its parts, then that
            # the attribute exists on some headrace class.
            self.check(base)
            assert any(hasattr(cls, node.attr) for cls in HEADRACE_CLASSES), (
                f"`{self.span}`: no headrace class has an attribute {node.attr!r}"
            )
            self.resolved[id(node)] = None
            return
        if isinstance(owner, type) and isinstance(base, ast.Name) and base.id in EXAMPLE_VARIABLES:
            assert hasattr(owner, node.attr), (
                f"`{self.span}`: {base.id} is a {owner.__name__}, which has no {node.attr!r}"
            )
            member = getattr(owner, node.attr)
            self.resolved[id(node)] = (owner, member)
            return
        self.resolved[id(node)] = _attribute(owner, node.attr, f"`{self.span}`")

    def check_call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and (func.id in EXAMPLE_VARIABLES or func.id in self.bound):
            return  # calling the user's own task: its signature is the user's function
        target = self.value_of(func) if isinstance(func, ast.Name | ast.Attribute) else None
        if isinstance(target, tuple):  # a method of a variable's headrace class
            owner, member = target
            if callable(member):
                _bind(member, node, f"`{self.span}`", method=True)
        elif target is not None and callable(target):
            _bind(target, node, f"`{self.span}`")


def _aliases(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from node.names


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _checkable_rows():
    headrace_column, note_column = _column(HEADRACE_COLUMN), _column("note")
    for line, cells in ROWS:
        if COMING.search(cells[note_column]):
            continue
        spans = _spans(cells[headrace_column])
        yield pytest.param(spans, cells[note_column], id=f"L{line}-{spans[0] if spans else ''}")


@pytest.mark.parametrize(("spans", "note"), list(_checkable_rows()))
def test_table_headrace_form_resolves(spans, note):
    assert spans, "a row's headrace form must be written as `code`"
    for span in spans:
        tree = _parse(span)
        _SpanChecker(span, tree).check(tree)
    # Dotted headrace paths named in the note must exist too.
    for span in _spans(note):
        for path in re.findall(r"\bheadrace(?:\.\w+)+", span):
            _resolve_dotted(path)


def test_differences_section_names_real_headrace_objects():
    text = TRANSLATION.read_text()
    section = re.search(
        r"^## What behaves differently and why\n(.*?)(?=^## |\Z)", text, re.M | re.S
    )
    assert section, f"{TRANSLATION.name} has no 'What behaves differently and why' section"
    paths = re.findall(r"\bheadrace(?:\.\w+)+", " ".join(_spans(section[1])))
    assert paths, "the section names no headrace objects; has the regex stopped matching?"
    for path in paths:
        _resolve_dotted(path)


def test_table_has_rows_to_check():
    # Guards the parametrized test above against a table the parser stopped reading.
    assert len(list(_checkable_rows())) >= 30


def test_span_checker_rejects_what_does_not_exist():
    # The checker itself must be able to fail, or the table test proves nothing.
    bad = [
        "from headrace import Flwo",
        "headrace.triggers.all_sucessful",
        "LocalExecuter()",
        "flow.runn()",
        "flow.run(throttles={})",
        'Parameter("p", defualt=1)',
        "flow_state[dialogue].map_statez",
        "context.task_loop_resul",
        "from prefect import task",
        "ifelse(condition, task_a)",
    ]
    for span in bad:
        tree = _parse(span)
        with pytest.raises((AssertionError, ImportError)):
            _SpanChecker(span, tree).check(tree)


# -- translations the table states in prose ------------------------------------------------


class _ScriptTask(Task):
    """The table's class-based task: construction arguments are defaults for `run`."""

    def __init__(self, db=None, script=None, **options):
        self.db, self.script = db, script
        super().__init__(**options)

    def run(self, db=None, script=None):
        return f"{db}: {script}"


def test_class_task_construction_defaults_are_overridden_at_call_time():
    create_db = _ScriptTask(name="Create DB", db="xfiles.sqlite", script="CREATE TABLE")
    insert_episode = _ScriptTask(name="Insert Episode", db="xfiles.sqlite")
    with Flow("xfiles") as flow:
        db = create_db()
        inserted = insert_episode(script="INSERT", upstream_tasks=[db])
        elsewhere = create_db(db="other.sqlite")
    state = flow.run(return_tasks=[db])
    assert state[db].result() == "xfiles.sqlite: CREATE TABLE"
    assert state[inserted].result() == "xfiles.sqlite: INSERT"
    assert state[elsewhere].result() == "other.sqlite: CREATE TABLE"


# -- cases that once failed while checking the translations -------------------------------------------


def test_task_states_reuse_of_a_task_and_its_map_then_a_new_map():
    # Seed 000's third run: reuse the scraped states, run only the new database tasks.
    from headrace import task

    @task
    def episode_list():
        return ["a", "b"]

    @task
    def scrape(url):
        return url.upper()

    @task
    def insert(text):
        return f"inserted {text}"

    with Flow("xfiles") as flow:
        episodes = episode_list()
        dialogue = scrape.map(episodes)
    scraped = flow.run(return_tasks=flow.tasks)
    with flow:
        final = insert.map(dialogue)
    state = flow.run(task_states=scraped.task_states)
    assert state[final].result() == ["inserted A", "inserted B"]


def test_task_states_reuse_of_every_state_of_a_run():
    from headrace import task

    @task
    def numbers():
        return [1, 2]

    @task
    def inc(x):
        return x + 1

    with Flow("chain") as flow:
        once = inc.map(numbers())
        twice = inc.map(once)
    first = flow.run()
    again = flow.run(task_states=first.task_states)
    assert again.is_successful() and again[twice] is first[twice]


def test_class_task_construction_default_is_passed_whole_to_map():
    insert_episode = _ScriptTask(name="Insert Episode", db="xfiles.sqlite")
    with Flow("xfiles") as flow:
        final = insert_episode.map(script=["INSERT 1", "INSERT 2"])
    state = flow.run()
    assert state[final].result() == ["xfiles.sqlite: INSERT 1", "xfiles.sqlite: INSERT 2"]


# -- coming-from-prefect.md: the function-flow table (Prefect 2.x) ------------------------------

FUNCTION_TABLE_TITLE = "Function flows (Prefect 2.x)"
FUNCTION_HEADER, FUNCTION_ROWS = table(TRANSLATION, FUNCTION_TABLE_TITLE)

# Constructs of seed 004 that the table must translate (checked in its first column).
FUNCTION_SEED_CONSTRUCTS = [
    "from prefect import flow, task",
    "!prefect version",
    "@flow",
    "@task",
    '@task(name="cat-url")',
    '@flow(name="cat")',
    "result = add_one(1)",
    "add_one(1, return_state=True)",
    "state = my_add_one_flow()",
    "state.result()",
    "Completed(message=None, type=COMPLETED, result=42)",
    'state_bad = api_flow("foo")',
    "print(state)",
    "data = common_flow(config={})",
    "await call_api(url)",
    "asyncio.run(async_flow(url))",
    "prefect orion start",
]


def _function_column(name: str) -> int:
    lowered = [h.lower() for h in FUNCTION_HEADER]
    assert name in lowered, f"the table has no {name!r} column; columns are {FUNCTION_HEADER}"
    return lowered.index(name)


def test_function_table_translates_every_seed_construct():
    prefect_column = " ".join(cells[0] for _, cells in FUNCTION_ROWS)
    missing = [c for c in FUNCTION_SEED_CONSTRUCTS if c not in prefect_column]
    assert not missing, f"seed 004 constructs with no row in the table: {missing}"


def _seed_004_variables() -> dict[str, object]:
    """The seed's variables as the headrace objects they are in a translated notebook.

    Values, not classes: a function flow's runs, records and futures carry their fields
    as instance attributes, so the checker looks attributes up on real objects, made by
    running a small flow of the seed's shape.
    """
    import asyncio

    from headrace import flow, task

    @task
    def add_one(x):
        return x + 1

    @task
    def call_api(url):
        if url == "foo":
            raise ValueError("unknown url type: 'foo'")
        return {"url": url}

    made = {}

    @flow
    def api_flow(url):
        made["future"] = add_one.submit(1)
        made["futures"] = add_one.map([1, 2])
        return call_api(url, return_state=True)

    @flow
    def main_flow():
        return api_flow("http://127.0.0.1/")

    @flow
    async def async_flow(url):
        return await call_api(url)

    state = main_flow(return_state=True)
    return {
        "add_one": add_one,
        "call_api": call_api,
        "api_flow": api_flow,
        "my_add_one_flow": api_flow,
        "common_flow": api_flow,
        "main_flow": main_flow,
        "async_flow": async_flow,
        "state": state,
        "state_bad": api_flow("foo", return_state=True),
        "future": made["future"],
        "futures": made["futures"],
        "url": "http://127.0.0.1/",
        "asyncio": asyncio,
    }


@pytest.fixture
def seed_004_names(monkeypatch):
    """Point the span checker at seed 004's variables and the function-flow classes."""
    from headrace.engine.function_flow import FunctionRun, FutureList, TaskFuture
    from headrace.functions import FunctionFlow

    # The checker reads these module globals when it runs; swap them for this table only.
    monkeypatch.setitem(globals(), "EXAMPLE_VARIABLES", _seed_004_variables())
    classes = (*HEADRACE_CLASSES, FunctionFlow, FunctionRun, TaskFuture, FutureList)
    monkeypatch.setitem(globals(), "HEADRACE_CLASSES", classes)


def _checkable_function_rows():
    headrace_column, note_column = _function_column(HEADRACE_COLUMN), _function_column("note")
    for line, cells in FUNCTION_ROWS:
        if COMING.search(cells[note_column]):
            continue
        spans = _spans(cells[headrace_column])
        yield pytest.param(spans, cells[note_column], id=f"L{line}-{spans[0] if spans else ''}")


@pytest.mark.parametrize(("spans", "note"), list(_checkable_function_rows()))
def test_function_table_headrace_form_resolves(spans, note, seed_004_names):
    assert spans, "a row's headrace form must be written as `code`"
    for span in spans:
        tree = _parse(span)
        _SpanChecker(span, tree).check(tree)
    for span in _spans(note):
        for path in re.findall(r"\bheadrace(?:\.\w+)+", span):
            _resolve_dotted(path)


def test_function_table_has_rows_to_check():
    assert len(list(_checkable_function_rows())) >= 20


def test_span_checker_rejects_what_function_flows_do_not_have(seed_004_names):
    bad = [
        "from headrace import flwo",
        "api_flow.last_runn",
        "api_flow.last_run.record",
        "add_one.sumbit(1)",
        "state_bad.exceptoin",
        "future.reslt()",
        "futures.results()",
        "add_one.submit(1).wiat()",
        "asyncio.runn(async_flow(url))",
    ]
    for span in bad:
        tree = _parse(span)
        with pytest.raises((AssertionError, ImportError)):
            _SpanChecker(span, tree).check(tree)


# -- every page: nothing the package ships is called "coming" ------------------------------

PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# "Coming from Prefect" is a page's title, not a promise.
COMING_WORD = re.compile(r"\bcoming\b(?!\s+from\s+prefect)", re.IGNORECASE)
# The public modules (DESIGN §2); their submodules are walked too.
PUBLIC_MODULES = [
    "headrace",
    "headrace.states",
    "headrace.signals",
    "headrace.triggers",
    "headrace.errors",
    "headrace.executors",
    "headrace.library",
    "headrace.results",
    "headrace.cache",
]


def _public_modules():
    for name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue  # not shipped yet
        yield module
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}."):
            if name != "headrace" and not info.name.rsplit(".", 1)[1].startswith("_"):
                yield importlib.import_module(info.name)


def _exported_names() -> set[str]:
    """The classes and functions the public modules offer, and the modules' own paths."""
    names = set()
    for module in _public_modules():
        if module.__name__ != "headrace":  # the package itself is no promise
            names.add(module.__name__)
        public = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in public:
            obj = getattr(module, name)
            is_code = inspect.isclass(obj) or inspect.isfunction(obj)
            if is_code and obj.__module__.startswith("headrace"):
                names.update({name, f"{module.__name__}.{name}"})
    return names


def coming_passages(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each passage that calls something coming: a table row, a
    paragraph or list item, or every line of a section whose heading says so."""
    passages, paragraph, section_level, in_code = [], [], None, False

    def end_paragraph():
        if paragraph and COMING_WORD.search(" ".join(t for _, t in paragraph)):
            passages.append((paragraph[0][0], " ".join(t for _, t in paragraph)))
        paragraph.clear()

    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_code = not in_code
            end_paragraph()
            continue
        heading = None if in_code else re.match(r"(#+)\s+(.*)", line)
        if heading:
            end_paragraph()
            level = len(heading[1])
            if section_level is not None and level <= section_level:
                section_level = None
            if COMING_WORD.search(heading[2]):
                section_level = level
        elif in_code:
            continue
        elif section_level is not None and line.strip():
            passages.append((number, line))
        elif line.startswith("|"):
            end_paragraph()
            if COMING_WORD.search(line):
                passages.append((number, line))
        elif not line.strip() or re.match(r"\s*([-*]|\d+\.) ", line):
            end_paragraph()
            if line.strip():
                paragraph.append((number, line))
        else:
            paragraph.append((number, line))
    end_paragraph()
    return passages


def shipped_names_called_coming(text: str, exported: set[str]) -> list[str]:
    """`line: name` for every backticked name of a "coming" passage the package exports."""
    found = []
    for number, passage in coming_passages(text):
        for span in re.findall(r"`([^`]+)`", passage):
            for name in re.findall(r"[A-Za-z_][\w.]*\w|[A-Za-z_]", span):
                if name in exported:
                    found.append(f"{number}: {name}")
    return found


EXPORTED = _exported_names()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_calls_coming_what_the_package_already_exports(page):
    shipped = shipped_names_called_coming(page.read_text(), EXPORTED)
    assert not shipped, f"{page.name} calls these coming, but they ship: {shipped}"


def test_the_coming_check_finds_a_shipped_name_in_each_kind_of_passage():
    # The check itself must be able to fail, or a passing run proves nothing.
    page = """
| `SQLiteScript(db="x")` | `headrace.library.sqlite.SQLiteQuery` | Coming with issue: x. |

The `ProcessExecutor` is
coming soon.

- `DaskExecutor()`: coming.

## Coming later

- `ThreadExecutor`

## Coming from Prefect

`Flow` is here.
"""
    assert shipped_names_called_coming(page, EXPORTED) == [
        "2: SQLiteScript",
        "2: headrace.library.sqlite.SQLiteQuery",
        "4: ProcessExecutor",
        "7: DaskExecutor",
        "11: ThreadExecutor",
    ]


def test_no_page_calls_the_shipped_web_ui_coming():
    from headrace.cli import main

    said = [
        passage
        for page in PAGES
        for _, passage in coming_passages(page.read_text())
        if "web UI" in passage
    ]
    assert said == []
    assert "server" in main.commands
    assert importlib.util.find_spec("headrace.server") is not None


def test_every_guarantee_names_a_test_that_exists():
    root = Path(__file__).resolve().parent
    page = (root.parent / "docs" / "guarantees.md").read_text()
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", page)) - {
        name for name in re.findall(r"\b(test_[a-z0-9_]+)\.py\b", page)
    }
    defined = {
        name
        for path in root.rglob("test_*.py")
        for name in re.findall(r"^def (test_[a-z0-9_]+)\(", path.read_text(), re.M)
    }
    assert len(named) >= 15
    assert named <= defined, sorted(named - defined)
