"""Project-level promises: analytics/ is pure, the README is true to the code."""

from __future__ import annotations

import ast
import re

from analytics.cli import build_parser
from analytics.schema import data_dictionary_markdown
from analytics.validate import RULES

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_analytics_never_imports_streamlit():
    for path in (ROOT / "analytics").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_readme_data_dictionary_matches_the_schema():
    start = README.index("<!-- data-dictionary:start -->") + len("<!-- data-dictionary:start -->")
    end = README.index("<!-- data-dictionary:end -->")
    assert README[start:end].strip() == data_dictionary_markdown().strip(), (
        "README data dictionary is out of date: paste analytics.schema.data_dictionary_markdown()")


def test_readme_documents_every_command_and_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert f"cdasi-outcomes {name}" in README, name
        for action in p._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert opt in README, f"{name} {opt}"


def test_readme_lists_every_validation_rule():
    for rule in RULES:
        assert f"`{rule}`" in README, rule


def test_readme_front_door():
    assert "make run" in README and "make test" in README
    assert re.search(r"synthetic", README, re.I)
