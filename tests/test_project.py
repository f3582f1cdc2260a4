"""Project-level promises: analytics/ is pure, the README is true to the code."""

from __future__ import annotations

import ast
import re

from analytics.cli import build_parser
from analytics.ingest.schema import data_dictionary_markdown
from analytics.ingest.validate import RULES

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
        "README data dictionary is out of date: paste analytics.ingest.schema.data_dictionary_markdown()")


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


def test_import_analytics_loads_no_modelling_or_plotting_library():
    """``import analytics`` (and the registry, protocol and options it needs to list analyses)
    stays light: the package is lazy (PEP 562), so statsmodels, lifelines, plotly, scipy and
    pandas load only when an analysis or a figure is asked for."""
    import subprocess
    import sys

    code = ("import sys, analytics, analytics.registry, analytics.protocol; "
            "analytics.registry.entries(); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'statsmodels', 'lifelines', 'plotly', 'scipy', 'pandas', 'streamlit', 'kaleido', 'jinja2'}); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", out.stdout
    # the lazy names still resolve
    lazy = subprocess.run([sys.executable, "-c", "import analytics; print(analytics.fit_cox.__module__)"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    assert lazy.stdout.strip() == "analytics.stats.cox"


LAYERS = ["errors", "tomlfile", "heap", "protocol", "ingest", "lines", "display", "stats", "parallel", "registry", "models", "spec", "pipeline", "library",
          "outputs", "sample", "cli"]


def _layer(parts: tuple[str, ...]) -> int:
    return LAYERS.index(parts[0].removesuffix(".py"))


def test_layout_lower_layers_never_import_higher_ones():
    """The folders show the architecture: ingest < lines < display < stats, then the
    orchestration (registry, models, spec, pipeline), then outputs (the pack, Reproduce) and the CLI,
    with errors, tomlfile, heap and protocol below everything. A module may import its own layer or lower ones, never a higher one (imports
    under TYPE_CHECKING excepted: they are only annotations)."""
    pkg = ROOT / "analytics"
    problems = []
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg).parts
        if rel[-1] == "__init__.py" and len(rel) == 1:
            continue
        mine = _layer(rel)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        here = rel[:-1]
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in typing_only:
                continue
            if node.level:
                base = list(here[:len(here) - (node.level - 1)]) if node.level > 1 else list(here)
                target = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("analytics."):
                target = node.module.split(".")[1:]
            else:
                continue
            if not target:
                continue
            theirs = LAYERS.index(target[0])
            if theirs > mine:
                problems.append(f"{'/'.join(rel)} imports {'.'.join(target)}")
    assert problems == []


def _declared() -> dict[str, str]:
    """Distribution name (normalised) -> declared floor, from pyproject.toml (dependencies and
    the test extra)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    out = {}
    for req in project["dependencies"] + project["optional-dependencies"]["test"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", req)
        assert m, f"{req}: every dependency needs a floor (>=)"
        out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_declared_floors_are_the_versions_test_min_installs():
    pins = {}
    for line in (ROOT / "tests" / "min-versions.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, ver = line.partition("==")
            pins[name.strip().lower()] = ver.strip()
    assert pins == _declared()


def test_every_imported_library_is_declared():
    import sys
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    declared = set(_declared())
    missing = set()
    for folder in ("analytics", "dashboard"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("analytics", "dashboard", ""):
                        continue
                    owners = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                    if not owners & declared:
                        missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_readme_python_example_runs(monkeypatch):
    """The README's "From Python" example is code that runs, on the committed sample."""
    section = README[README.index("### From Python"):README.index("### Adding an analysis")]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(compile(code, "<README From Python>", "exec"), ns)
    assert ns["m"].cox.alpha == 0.1 and ns["cox"].alpha == 0.1
    assert list(ns["m"].results) == [e.name for e in __import__("analytics.registry").registry.entries()]


def test_readme_pages_are_the_apps_pages():
    app = (ROOT / "dashboard" / "app.py").read_text(encoding="utf-8")
    titles = re.findall(r'st\.Page\("[^"]+", title="([^"]+)"', app)
    words = {8: "Eight", 9: "Nine", 10: "Ten", 11: "Eleven", 12: "Twelve", 13: "Thirteen", 14: "Fourteen"}
    assert f"{words[len(titles)]} pages, one\nshared cohort" in README
    table = README[README.index("| page | what it shows |"):README.index("Every result shows its warnings")]
    assert re.findall(r"^\| \*\*([^*]+)\*\* \|", table, re.M) == titles


def test_readme_results_json_keys_exist(sample_dir):
    from analytics import analyze, load

    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    doc = analyze(prepared, models=True).results()
    para = README[README.index("- `results.json`: `tool`"):README.index("### From Python")]
    for key in ("tool", "input", "definitions", "lines", "attrition", "time_to_response", "mixed_model",
                "competing_risks", "interval_censoring", "table1", "adjusted_comparison", "comparison_note",
                "quality", "timings_s", "warnings", "analyses"):
        assert f"`{key}`" in para, key
        assert key in doc, key
    for key in ("logrank", "logrank_pairwise", "risk_table", "cox", "cox_adjusted"):
        assert key in doc["time_to_response"], key
