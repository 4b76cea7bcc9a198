"""Load a script of tools/ (not a package, not shipped) as a module: reference tests reuse its constants,
frame loading and weight seeding instead of restating them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools"
REFERENCE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_tool(name: str, shared_input: str):
    """A reference tool whose real input (under ../shared) is present; the calling test skips otherwise."""
    from conftest import shared_file

    shared_file(shared_input)
    return load_tool(name)
