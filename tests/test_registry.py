"""The registry of analyses: a new analysis is one entry. A dummy analysis registered here, and
nowhere else, shows up in results.json, the CLI's summary, the meeting pack (tables, figures,
report section, methods, manifest, small-cell suppression) and the dashboard (All analyses page,
Report page choices) without any other edit."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics import ModelOptions, analyze, load
from analytics.display.style import base_layout
from analytics.display.suppression import count_text
from analytics.protocol import AnalysisWarning, Call, FigureSpec, TableSpec, recorded
from analytics.registry import Entry, entries, entry, register, unregister

MARK = "Dummy analysis: lines per arm"


@dataclass(frozen=True)
class DummyResult:
    counts: pd.DataFrame  # arm, lines, responses
    warnings: list = field(default_factory=list)
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    @property
    def summary(self) -> pd.DataFrame:
        return self.counts

    def tables(self) -> dict[str, TableSpec]:
        return {"counts": TableSpec(self.counts, MARK, counts=("lines", "responses"))}

    def figures(self) -> dict[str, FigureSpec]:
        def make(min_cell, hidden):
            rows = self.counts[~self.counts["arm"].isin(hidden)]
            fig = go.Figure(go.Bar(x=rows["arm"], y=rows["lines"],
                                   text=[count_text(n, min_cell) for n in rows["lines"]]))
            fig.update_yaxes(title_text="Lines (n)")
            return base_layout(fig, MARK)
        return {"bars": FigureSpec(make, MARK)}

    def to_dict(self) -> dict:
        return {"lines": {r.arm: int(r.lines) for r in self.counts.itertuples()}, "alpha": self.alpha}


@recorded(table="table")
def fit_dummy(table: pd.DataFrame, arms: tuple[str, ...], alpha: float = 0.05) -> DummyResult:
    rows = [{"arm": a, "lines": int((table["arm"] == a).sum()),
             "responses": int(((table["arm"] == a) & (table["event"] == 1)).sum())} for a in arms]
    return DummyResult(pd.DataFrame(rows), [AnalysisWarning("a dummy warning")], alpha)


@pytest.fixture
def dummy():
    e = register(Entry("dummy", "Dummy analysis", lambda ctx: fit_dummy(ctx.table, tuple(ctx.arms), alpha=ctx.alpha),
                       results_key=("dummy",), tables={"counts": "dummy_counts"}, figures={"bars": "dummy_bars"},
                       methods=lambda r, ctx: "The dummy analysis counts lines per arm.",
                       notes=lambda r: ["A note of the dummy analysis."],
                       cli=lambda r: [f"Dummy: {sum(r.to_dict()['lines'].values())} lines"]))
    yield e
    unregister("dummy")


def test_registry_lists_the_builtins_in_order():
    assert [e.name for e in entries()] == ["cohort", "table1", "km", "cox", "cox_adjusted", "competing", "interval",
                                           "mixed", "adjusted", "scheme", "quality"]
    with pytest.raises(KeyError, match="no analysis named 'nope'"):
        entry("nope")
    with pytest.raises(ValueError, match="identifier"):
        register(Entry("not a name", "x", lambda ctx: None))


def test_a_registered_analysis_reaches_results_json_and_the_cli(dummy, sample_dir, tmp_path, capsys):
    from analytics.cli import main

    assert [e.name for e in entries()][-1] == "dummy"
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    analysis = analyze(prepared, models=ModelOptions(alpha=0.1))
    doc = analysis.results()
    assert doc["dummy"]["lines"]["MMF"] == 275 and doc["dummy"]["alpha"] == 0.1
    assert doc["analyses"]["dummy"]["call"]["function"] == "tests.test_registry.fit_dummy"
    assert "[dummy] a dummy warning" in doc["warnings"]
    assert {"message": "a dummy warning", "source": "dummy", "category": "data"} in doc["warnings_detail"]

    code = main(["analyze", str(sample_dir / "visits.csv"), "--therapies", str(sample_dir / "therapies.csv"),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert "Dummy: 747 lines" in capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["dummy"]["lines"] == {"MMF": 275, "IVIG": 231, "JAKi": 241}


def test_a_registered_analysis_reaches_the_pack_suppressed(dummy, sample_dir, tmp_path):
    from analytics.outputs.pack import PackOptions, build_pack, figure_names, table_names

    assert "dummy_counts" in table_names() and "dummy_bars" in figure_names()
    opts = PackOptions(min_cell=250, formats=(), figures=("km", "dummy_bars"), tables=("attrition", "dummy_counts"))
    pack = build_pack(sample_dir / "visits.csv", tmp_path / "pack", sample_dir / "therapies.csv", options=opts)
    with open(pack.out / "tables" / "dummy_counts.csv", newline="", encoding="utf-8-sig") as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert rows["MMF"]["lines"] == "275" and rows["IVIG"]["lines"] == "<250" and rows["JAKi"]["lines"] == "<250"
    assert (pack.out / "figures" / "dummy_bars.html").exists()
    report = (pack.out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Dummy analysis</h2>" in report and "The dummy analysis counts lines per arm." in report
    assert "A note of the dummy analysis." in report and MARK in report
    assert pack.manifest["contents"]["tables"] == ["attrition", "dummy_counts"]
    assert pack.manifest["contents"]["figures"] == ["km", "dummy_bars"]
    assert pack.manifest["analyses"]["dummy"]["alpha"] == 0.05


def test_a_registered_analysis_reaches_the_dashboard(dummy):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from .conftest import ROOT

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180).run()
    at.session_state["analyses.name"] = "dummy"
    at.switch_page("views/analyses.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "dummy" in at.selectbox[0].options or "Dummy analysis" in at.selectbox[0].options
    assert any(MARK in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1
    assert any(list(df.value.columns) == ["Arm", "Lines", "Responses"] for df in at.dataframe)  # for people
    assert any("A note of the dummy analysis." in c.value for c in at.caption)
    snippets = [c.value for c in at.code if c.language == "python"]
    assert any("from tests.test_registry import fit_dummy" in s and "alpha=0.05" in s for s in snippets)

    at.switch_page("views/report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    choices = [o for m in at.multiselect for o in m.options]
    assert "dummy_bars" in choices and "dummy_counts" in choices


@pytest.mark.parametrize("dataset", ["sample", "tiny visit_day export with an empty arm"])
def test_every_registered_result_follows_the_protocol(sample_dir, tmp_path, dataset):
    """call, alpha, warnings that keep their source, summary, tables() of TableSpec whose
    declared count columns exist, figures() of FigureSpec that draw, and a JSON-safe to_dict()."""
    import dataclasses

    from analytics.display.export import json_safe
    from analytics.protocol import AnalysisWarning

    from .test_dashboard import TINY

    if dataset == "sample":
        prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    else:
        (tmp_path / "tiny.csv").write_bytes(TINY)
        prepared, _ = load(tmp_path / "tiny.csv")
    m = analyze(prepared, models=True).models
    assert dataset == "sample" or m.quality.warnings  # a visit_day export: the quality notes say what is missing
    for e in entries():
        r = m[e.name]
        assert dataclasses.is_dataclass(r) and type(r).__dataclass_params__.frozen, e.name
        assert isinstance(r.call, Call) and r.call.function and r.alpha == 0.05, e.name
        assert isinstance(r.summary, pd.DataFrame), e.name
        for w in r.warnings:
            assert isinstance(w, AnalysisWarning) and w.source == e.name, (e.name, w)
        tables = r.tables()
        assert tables, e.name
        for tname, spec in tables.items():
            assert isinstance(spec, TableSpec) and isinstance(spec.frame, pd.DataFrame), (e.name, tname)
            missing = [c for c in spec.counts + spec.derived if c not in spec.frame.columns]
            assert not missing or spec.frame.empty, (e.name, tname, missing)
        for fname, spec in r.figures().items():
            assert isinstance(spec, FigureSpec) and spec.caption, (e.name, fname)
            assert isinstance(spec.make(None, ()), go.Figure), (e.name, fname)
        json.dumps(json_safe(r.to_dict()))


def test_the_command_line_frees_only_the_visit_columns_no_analysis_reads(sample_dir):
    """``analyze(lean=True)`` (the command line) deletes the visit columns that no
    analysis reads after derivation, and keeps each analysis rendered, to fit in less memory.
    results.json must be the same, and every analysis's tables too: an analysis that reads a
    column its entry does not declare (Entry.visits) either fails here or, where it skips a
    missing column, differs here."""
    from analytics.models import fit_models
    from analytics.pipeline import release_unread_visit_columns
    from analytics.registry import Rendered

    kept, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    cut, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    a = analyze(kept, models=True)
    b = analyze(cut, models=True, lean=True)
    assert set(kept.visits.columns) - set(cut.visits.columns) == {
        "cdasi_damage", "prednisone_mg_day", "skindex29_symptoms", "skindex29_emotions", "skindex29_functioning",
        "itch_vas", "pga_skin", "systemic_therapy", "agents"}
    assert len(cut.visits) == len(kept.visits)
    doc_a, doc_b = a.results(), b.results()
    for doc in (doc_a, doc_b):
        doc.pop("timings_s")
    assert json.dumps(doc_a, sort_keys=True, default=str) == json.dumps(doc_b, sort_keys=True, default=str)
    assert all(isinstance(r, Rendered) for name, r in b.models.results.items() if not entry(name).local)
    unrendered = fit_models(b.derivation, cut, full=b.full)  # on the cut columns, the results themselves
    compared = 0
    for e in entries():
        specs_a, specs_b = a.models[e.name].tables(), unrendered[e.name].tables()
        assert specs_a.keys() == specs_b.keys()
        for key, spec in specs_a.items():
            pd.testing.assert_frame_equal(spec.frame, specs_b[key].frame)
            compared += 1
    assert compared > 30
    assert release_unread_visit_columns(cut) == []  # nothing left to free


def test_an_analysis_that_does_not_say_what_it_reads_keeps_every_visit_column(dummy, sample_dir):
    from analytics.pipeline import release_unread_visit_columns
    from analytics.registry import visit_columns

    assert dummy.visits is None and visit_columns() is None
    assert visit_columns(["km", "quality"]) >= {"patient_id", "sex", "visit_date"}
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    columns = list(prepared.visits.columns)
    analyze(prepared, models=True, lean=True)
    assert release_unread_visit_columns(prepared) == [] and list(prepared.visits.columns) == columns
