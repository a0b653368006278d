"""The package's metadata: what `pip install` reads from pyproject.toml."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_that_setuptools_builds_without_a_warning():
    # A TOML table (`{ text = ... }`) is deprecated, and stops building after 2027-02-18.
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = tuple(int(n) for n in re.fullmatch(r"setuptools>=([\d.]+)", setuptools)[1].split("."))
    assert minimum >= (77,), "setuptools reads an SPDX license string from version 77 on"


def test_the_installed_metadata_carries_the_license_expression():
    metadata = importlib.metadata.metadata("headrace")
    assert metadata.get("License-Expression") == "Apache-2.0"
    assert metadata.get("License") is None
