"""headrace.cache: policies and canonical keys, the same in every process.

The cross-process test computes keys for the inputs issue 13 lists (reordered dicts,
sets of strings, DataFrames, numpy arrays, pydantic models, classes defined in
`__main__`) in fresh interpreters under different PYTHONHASHSEEDs and compares them.
TASK_SOURCE is checked on modules written to disk, as a user edits them.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
from collections import namedtuple

import numpy
import pandas as pd
import pydantic
import pytest

from headrace.cache import (
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    TASK_SOURCE,
    CacheKeyError,
    canonical,
)


def body(x, y=1):
    return x + y


def key(arguments, policy=INPUTS, parameters=None):
    return policy.key(body, arguments, parameters)


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Box:
    size: int
    tags: frozenset


class Model(pydantic.BaseModel):
    name: str
    weights: dict[str, float]


Pair = namedtuple("Pair", "a b")


def test_equal_inputs_give_equal_keys_and_unequal_ones_do_not():
    assert key({"x": {"a": 1, "b": [1, 2]}}) == key({"x": {"b": [1, 2], "a": 1}})
    assert key({"x": 1, "y": 2}) == key({"y": 2, "x": 1})
    distinct = [
        {"x": 1}, {"x": 1.0}, {"x": True}, {"x": "1"}, {"x": b"1"}, {"x": [1]}, {"x": (1,)},
        {"x": {1}}, {"x": None}, {"x": 2}, {"x": 1, "y": 1}, {"x": Pair(1, 2)}, {"x": (1, 2)},
        {"x": Colour.RED}, {"x": Box(1, frozenset())}, {"x": Box(2, frozenset())},
        {"x": numpy.array([1, 2])}, {"x": numpy.array([1.0, 2.0])}, {"x": numpy.array([[1, 2]])},
        {"x": pd.DataFrame({"a": [1]})}, {"x": pd.DataFrame({"b": [1]})},
        {"x": pd.DataFrame({"a": [1.0]})}, {"x": Model(name="m", weights={"w": 1.0})},
    ]  # fmt: skip
    keys = [key(arguments) for arguments in distinct]
    assert len(set(keys)) == len(keys)


def test_a_cycle_and_a_plain_object_have_keys():
    looped: list = [1]
    looped.append(looped)
    assert key({"x": looped}) == key({"x": looped})

    class Point:
        def __init__(self, x):
            self.x = x

    assert key({"x": Point(1)}) == key({"x": Point(1)}) != key({"x": Point(2)})


def test_an_input_with_no_canonical_encoding_is_an_error_naming_it():
    with pytest.raises(CacheKeyError, match=r"Input 'y' cannot be part of a cache key: a _thread"):
        key({"x": 1, "y": threading.Lock()})
    with pytest.raises(CacheKeyError, match=r"cache_policy=INPUTS - 'y'"):
        key({"x": 1, "y": threading.Lock()})
    assert key({"x": 1, "y": threading.Lock()}, INPUTS - "y") == key({"x": 1}, INPUTS)


def test_policies_compose_and_no_cache_gives_no_key():
    both = INPUTS + FLOW_PARAMETERS
    assert key({"x": 1}, both, {"n": 1}) != key({"x": 1}, both, {"n": 2})
    assert key({"x": 1}, INPUTS, {"n": 1}) == key({"x": 1}, INPUTS, {"n": 2})
    assert key({"x": 1, "y": 5}, both - "y", {"n": 1}) == key(
        {"x": 1, "y": 6}, both - "y", {"n": 1}
    )
    assert key({"x": 1}, NO_CACHE) is None and key({"x": 1}, INPUTS + NO_CACHE) is None
    assert repr(INPUTS - "y" + TASK_SOURCE) == "INPUTS - 'y' + TASK_SOURCE"


# -- the same keys in every process -------------------------------------------------------------

KEYS_IN_A_FRESH_PROCESS = """
import sys
from collections import namedtuple
import numpy, pandas as pd, pydantic
from headrace.cache import INPUTS

class Local:  # a class of __main__
    def __init__(self, name, items):
        self.name, self.items = name, items

class Model(pydantic.BaseModel):
    name: str
    weights: dict[str, float]

Pair = namedtuple("Pair", "a b")

def body(**kw):
    return kw

inputs = {
    "dict": {"b": [1, 2.5], "a": {"z", "y", "x"}, "c": frozenset({"q", "r"})},
    "reordered": dict(reversed(list({"one": 1, "two": 2, "three": 3}.items()))),
    "frame": pd.DataFrame({"city": ["Oslo", "Lima"], "t": [1.5, 22.0]}, index=["a", "b"]),
    "series": pd.Series([1, 2, 3], name="s"),
    "array": numpy.arange(12, dtype="int32").reshape(3, 4),
    "model": Model(name="m", weights={"w2": 0.5, "w1": 1.5}),
    "local": Local("n", {"s", "t", "u"}),
    "pair": Pair("a", {"x", "y"}),
    "bytes": b"caf\\xe9",
}
for name, value in inputs.items():
    print(name, INPUTS.key(body, {"value": value}))
"""


def test_keys_are_the_same_under_any_pythonhashseed():
    outputs = []
    for seed in ("1", "2", "12345"):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(KEYS_IN_A_FRESH_PROCESS)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    keys = [line.split()[1] for line in outputs[0].splitlines()]
    assert len(keys) == 9 and len(set(keys)) == 9 and all(len(k) == 64 for k in keys)


# -- TASK_SOURCE ----------------------------------------------------------------------------------

ORIGINAL = '''
from headrace import task

@task(retries=1)
def clean(rows):
    """Drop empty rows."""
    return [r for r in rows if r]
'''

EDITS_THAT_KEEP_THE_KEY = {
    "a comment": ORIGINAL.replace("    return", "    # keep what is there\n    return"),
    "the docstring": ORIGINAL.replace("Drop empty rows.", "Remove rows that are empty."),
    "the task's options": ORIGINAL.replace("retries=1", "retries=3"),
    "blank lines": ORIGINAL.replace('"""\n', '"""\n\n\n'),
}
EDITS_THAT_CHANGE_IT = {
    "the body": ORIGINAL.replace("if r]", "if r is not None]"),
    "a default": ORIGINAL.replace("(rows)", "(rows, keep=None)"),
}


def source_key(tmp_path, source: str, name: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return TASK_SOURCE.key(module.clean.fn, {})


def test_task_source_ignores_comments_docstrings_and_options_but_not_the_body(tmp_path):
    original = source_key(tmp_path, ORIGINAL, "original")
    for what, source in EDITS_THAT_KEEP_THE_KEY.items():
        assert source_key(tmp_path, source, what.replace(" ", "_").replace("'", "")) == original, (
            what
        )
    for what, source in EDITS_THAT_CHANGE_IT.items():
        assert source_key(tmp_path, source, what.replace(" ", "_")) != original, what


def test_task_source_of_code_without_readable_source_comes_from_its_code_object():
    namespace: dict = {}
    exec("def f(x):\n    'doc'\n    return x + 1\ndef g(x):\n    return x + 2", namespace)
    keys = {TASK_SOURCE.key(namespace[n], {}) for n in ("f", "g")}
    assert len(keys) == 2
    exec("def f(x):\n    'other doc'\n    return x + 1", namespace)
    assert TASK_SOURCE.key(namespace["f"], {}) in keys  # the docstring does not count


def test_canonical_is_exact_for_floats_and_types():
    assert canonical(0.1) != canonical(0.1 + 1e-17 * 2)
    assert canonical(1) != canonical(True) != canonical(1.0)
    assert canonical("é") == canonical("é")
