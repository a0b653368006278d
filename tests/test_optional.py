"""A missing optional dependency is an error that names the extra to install.

Each case runs in a fresh interpreter where the dependency is made unimportable
(`sys.modules[name] = None`, which is what Python does for a package that is absent),
so the real import machinery and headrace's real code meet a missing package.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from headrace._optional import require
from headrace.errors import MissingDependencyError


def run_without(module: str, code: str) -> subprocess.CompletedProcess:
    script = f"import sys\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


# (the optional module, its extra, code that needs it)
NEEDS = [
    ("distributed", "dask", "from headrace.executors import DaskExecutor\nDaskExecutor()"),
    (
        "distributed",
        "dask",
        """
        from headrace import Flow, task
        from headrace.executors import DaskExecutor

        @task
        def one():
            return 1

        with Flow("f") as flow:
            one()
        flow.run(executor=DaskExecutor(address="tcp://127.0.0.1:1"))
        """,
    ),
    ("pandas", "pandas", "from headrace.results import PandasSerializer; PandasSerializer('csv')"),
    ("fsspec", "fsspec", "from headrace.results import FSSpecStorage; FSSpecStorage('memory://x')"),
    ("starlette", "server", "from headrace.server import create_app; create_app()"),
]


@pytest.mark.parametrize(
    ("module", "extra", "code"),
    NEEDS,
    ids=["DaskExecutor()", "flow.run", "PandasSerializer()", "FSSpecStorage()", "create_app()"],
)
def test_a_missing_optional_dependency_names_the_extra_to_install(module, extra, code):
    done = run_without(module, code)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("headrace.errors.MissingDependencyError: "), done.stderr
    assert f"pip install 'headrace[{extra}]'" in last and repr(module) in last


def test_the_import_headrace_itself_needs_no_optional_dependency():
    done = run_without(
        "distributed",
        "import sys\nfor m in ('pandas', 'fsspec'): sys.modules[m] = None\n"
        "import headrace, headrace.executors, headrace.results",
    )
    assert done.returncode == 0, done.stderr


def test_require_returns_the_module_when_it_is_installed():
    import json

    assert require("json", "none", "this test") is json


def test_require_names_the_extra_and_is_still_a_module_not_found_error():
    with pytest.raises(ModuleNotFoundError) as info:
        require("headrace_no_such_package", "extra-x", "Something")
    assert isinstance(info.value, MissingDependencyError)
    assert info.value.name == "headrace_no_such_package" and info.value.extra == "extra-x"
    assert str(info.value) == (
        "Something needs 'headrace_no_such_package', which is not installed. "
        "Install headrace's 'extra-x' extra: pip install 'headrace[extra-x]'"
    )


def test_require_lets_a_broken_installed_package_say_what_is_broken():
    # The package imports, but a module it imports is missing: that error is the truth.
    done = run_without(
        "json.decoder",
        """
        from headrace._optional import require
        try:
            require("json", "x", "test")
        except ModuleNotFoundError as exc:
            print(type(exc).__name__, exc.name)
        """,
    )
    assert done.stdout.strip() == "ModuleNotFoundError json.decoder", done.stderr
