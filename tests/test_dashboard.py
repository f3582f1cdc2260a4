"""The dashboard, headless (Streamlit's AppTest): every page on the sample cohort and on a tiny
cohort with an empty arm; filters, the response rule and the mixed-model spec change; an
invalid upload keeps the previous dataset."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from analytics.lines.cohort import CohortFilter  # noqa: E402
from dashboard.state import DatasetFiles  # noqa: E402

from .conftest import ROOT  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
PAGES = ["views/data.py", "views/cohort.py", "views/trajectories.py", "views/time_to_response.py",
         "views/mixed_model.py", "views/timeline.py", "views/scheme.py", "views/quality.py", "views/analyses.py",
         "views/report.py"]

TINY = ("patient_id,visit_day,cdasi_activity,systemic_therapy,antibody,ild,sex,age_at_onset\n" + "".join(
    f"T{i},{w},{max(0, 20 - (i % 3) * k * 3 + (i % 2))},{'MMF' if i % 2 else 'IVIG'},{'mda5' if i % 4 == 0 else 'tif1g'},"
    f"{'yes' if i % 5 == 0 else 'no'},{'female' if i % 3 else 'male'},{40 + i}\n"
    for i in range(24) for k, w in enumerate((0, 28, 56, 84)))).encode()


def _app(files: DatasetFiles | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if files is not None:
        at.session_state["data.files"] = files
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error if "Something went wrong" in e.value], [e.value for e in at.error]


TTR_TABS = ["Kaplan-Meier", "Cox model", "Competing risks", "Interval censoring", "Adjusted (weighted)"]


def _visits(at: AppTest, page: str):
    """Run ``page``; the Time to response page once per tab (only the open tab's analyses are
    fitted), leaving its first tab selected afterwards."""
    tabs = TTR_TABS if page.endswith("time_to_response.py") else [None]
    for tab in tabs:
        if tab is not None:
            at.session_state["ttr.tab"] = tab
        at.switch_page(page).run()
        yield tab
    if tabs[0] is not None:
        at.session_state["ttr.tab"] = TTR_TABS[0]


@pytest.fixture(scope="module")
def sample_app():
    at = _app()
    _ok(at)
    return at


@pytest.mark.parametrize("page,charts", [("views/data.py", 0), ("views/cohort.py", 0), ("views/trajectories.py", 3),
                                         ("views/time_to_response.py", 1), ("views/mixed_model.py", 2),
                                         ("views/timeline.py", 1), ("views/scheme.py", 4), ("views/quality.py", 1),
                                         ("views/analyses.py", 2), ("views/report.py", 0)])
def test_every_page_on_the_sample(sample_app, page, charts):
    at = sample_app.switch_page(page).run()
    _ok(at)
    assert len(at.get("plotly_chart")) >= charts
    assert at.title[0].value
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Sample cohort" in sidebar and "Filters:" in sidebar


def test_data_page_shows_report_guard_and_attrition(sample_app):
    at = sample_app.switch_page("views/data.py").run()
    _ok(at)
    heads = [h.value for h in at.subheader]
    assert heads == ["Validation report", "De-identification guard", "Attrition: from rows to analysable lines"]
    assert [m.label for m in at.metric] == ["Patients", "Visits", "Errors", "Warnings"]
    assert at.metric[0].value == "400"


def test_tiny_cohort_with_an_empty_arm_on_every_page():
    at = _app(DatasetFiles((TINY, "tiny.csv"), label="tiny"))
    _ok(at)
    for page in PAGES:
        at.switch_page(page).run()
        _ok(at)
    at.switch_page("views/time_to_response.py").run()
    labels = " ".join(str(x.label) for x in at.expander)
    assert "warning(s) for the Kaplan-Meier analysis" in labels, labels  # JAKi has no lines: said, not hidden


def test_filters_change_and_an_empty_result_says_so(sample_app):
    at = sample_app.switch_page("views/cohort.py").run()
    at.session_state["cohort.filter"] = CohortFilter(antibodies=("mda5",), ild="yes")
    at.run()
    _ok(at)
    assert "antibody: mda5" in " ".join(m.value for m in at.sidebar.markdown)
    caption = " ".join(c.value for c in at.caption)
    assert "therapy lines pass the filters" in caption
    at.session_state["cohort.filter"] = CohortFilter(line_numbers=(7, 7), severity="mild", ild="yes")
    at.switch_page("views/time_to_response.py").run()
    _ok(at)
    assert any("No included therapy line matches" in i.value for i in at.info)
    at.session_state["cohort.filter"] = CohortFilter()
    at.run()


def test_the_form_applies_filters(sample_app):
    at = sample_app.switch_page("views/cohort.py").run()
    at.multiselect[0].set_value(["MMF", "JAKi"])
    at.button[0].click().run()  # the form's submit button
    _ok(at)
    assert at.session_state["cohort.filter"].arms == ("MMF", "JAKi")
    assert "arms: MMF, JAKi" in " ".join(m.value for m in at.sidebar.markdown)
    at.session_state["cohort.filter"] = CohortFilter()
    at.run()


def test_response_rule_changes_everything(sample_app):
    at = sample_app.switch_page("views/time_to_response.py").run()
    at.selectbox[0].set_value("percent")
    at.number_input[0].set_value(40.0)
    at.checkbox[0].check()
    at.button[0].click().run()
    _ok(at)
    opts = at.session_state["analysis.options"]
    assert str(opts.response) == "percent:40" and opts.confirm
    assert "percent:40" in " ".join(m.value for m in at.sidebar.markdown)
    at.switch_page("views/mixed_model.py").run()
    _ok(at)


def test_scheme_rule_and_dataset_changes_reach_the_scheme_page():
    """Transitions: edit the scheme on its page, then change the response rule, then the dataset;
    each time the Scheme page's tables, its Reproduce code and the analysis spec follow."""
    import re

    at = _app()
    at.switch_page("views/scheme.py").run()
    _ok(at)

    def late(at):  # "Failed assessment, not escalated within W weeks (N)"
        text = next(m.value for m in at.markdown if "not escalated within" in m.value).replace("*", "")
        w, n = re.search(r"within ([\d.]+) weeks \((\d+)\)", text).groups()
        return float(w), int(n)

    def steps(at):  # the steps table as shown, its counts as numbers
        shown = at.dataframe[0].value.copy()
        for c in ("Lines", "Responses"):
            shown[c] = shown[c].astype(str).str.replace(",", "").astype(int)
        return shown

    w0, n0 = late(at)
    steps0 = steps(at)
    assert w0 == 4 and n0 > 0 and list(steps0["Lines"]) and steps0["Lines"].sum() > 0
    assert "escalate_weeks=4.0" in " ".join(c.value for c in at.code)

    escalate = next(n for n in at.main.number_input if n.label.startswith("Escalation due within"))
    escalate.set_value(26.0)
    next(b for b in at.button if b.label == "Apply").click().run()
    _ok(at)
    w1, n1 = late(at)
    assert w1 == 26 and n1 < n0  # more time to escalate: fewer late escalations
    assert steps(at).equals(steps0)  # the steps do not depend on the escalation time
    assert at.session_state["analysis.model_options"].scheme.escalate_weeks == 26
    assert "escalate_weeks=26.0" in " ".join(c.value for c in at.code)
    assert "edited on the Scheme page" in " ".join(str(x.label) for x in at.expander)

    at.switch_page("views/time_to_response.py").run()  # a stricter response rule
    at.selectbox[0].set_value("percent")
    at.number_input[0].set_value(40.0)
    at.button[0].click().run()
    _ok(at)
    at.switch_page("views/scheme.py").run()
    _ok(at)
    steps2 = steps(at)
    assert (steps2["Lines"] == steps0["Lines"]).all() and not (steps2["Responses"] == steps0["Responses"]).all()
    assert late(at)[0] == 26  # the scheme survives a rule change
    # the page agrees with the API (and so the CLI) under the same rule and scheme
    import dataclasses

    from analytics import DeriveOptions, ResponseRule, analyze, load
    from analytics.lines.scheme import Scheme
    from analytics.models import ModelOptions

    prepared, _ = load(ROOT / "sample_data" / "visits.csv", ROOT / "sample_data" / "therapies.csv")
    api = analyze(prepared, DeriveOptions(response=ResponseRule("percent", 40.0)),
                  models=ModelOptions(scheme=dataclasses.replace(Scheme.default(), escalate_weeks=26.0))).models["scheme"]
    assert list(steps2["Lines"]) == list(api.steps["lines"]) and list(steps2["Responses"]) == list(api.steps["responses"])
    assert late(at)[1] == len(api.not_escalated)
    assert "kind='percent', value=40.0" in " ".join(c.value for c in at.code)

    at.session_state["data.files"] = DatasetFiles((TINY, "tiny.csv"), label="tiny")  # another dataset
    at.run()
    _ok(at)
    steps3 = steps(at)
    assert steps3["Lines"].sum() == 24  # the tiny export: 24 patients, one MMF or IVIG line each
    assert late(at)[0] == 26 and "tiny.csv" in " ".join(c.value for c in at.code)


def test_mixed_model_spec_changes():
    """Transitions on the Mixed model page: the nested default, then intercepts only, then lines
    only; each time the page's model, its variance split and the pack's spec follow."""
    at = _app()
    at.switch_page("views/mixed_model.py").run()
    _ok(at)
    text = lambda: " ".join(m.value for m in at.markdown)  # noqa: E731
    assert "patient_id:line_id)" in text() and "Of the variation in CDASI activity" in text()
    assert "between lines of the same patient" in text()
    at.radio[1].set_value("intercept")
    at.button[0].click().run()
    _ok(at)
    assert at.session_state["analysis.model_options"].mixed.random == "intercept"
    assert "(1 | patient_id) + (1 | patient_id:line_id)" in text()
    at.radio[0].set_value("line")
    at.button[0].click().run()
    _ok(at)
    assert at.session_state["analysis.model_options"].mixed.levels == "line"
    assert "cdasi_activity ~ weeks * arm + (1 | line_id)" in text() and "between patients" not in text()
    # regression: the Mixed model page's settings never reached the pack (its manifest had the defaults)
    at.switch_page("views/report.py").run()
    at.multiselect(key="report.figures").set_value([])
    at.multiselect(key="report.tables").set_value(["mixed_fixed_effects", "mixed_variance"])
    at.button[0].click().run()
    _ok(at)
    _, manifest, _ = at.session_state["report.result"]
    assert manifest["spec"]["mixed"]["random"] == "intercept" and manifest["spec"]["mixed"]["levels"] == "line"
    assert "random='intercept'" in manifest["analyses"]["mixed"]["call"]["kwargs"]["spec"]
    assert "levels='line'" in manifest["analyses"]["mixed"]["call"]["kwargs"]["spec"]


def test_invalid_upload_keeps_the_previous_dataset():
    script = """
import streamlit as st
from dashboard import state
from dashboard.state import DatasetFiles
before = state.current_files()
ok, message, report = state.try_files(DatasetFiles((b"patient_id,visit_day,cdasi_activity\\nP1,0,250\\n", "bad.csv"),
                                                   label="bad.csv"))
st.text(str(ok))
st.text(message)
st.text(str(state.current_files() is before))
ok2, message2, _ = state.try_files(DatasetFiles((b"\\x00\\x01binary", "x.csv"), label="x.csv"))
st.text(str(ok2))
st.text(message2)
"""
    at = AppTest.from_string(script, default_timeout=60).run()
    _ok(at)
    vals = [m.value for m in at.text]
    assert vals[0] == "False" and "1 error(s) and was not loaded" in vals[1] and vals[2] == "True"
    assert vals[3] == "False" and "previous dataset is still in use" in vals[4]


def test_selecting_a_patient_opens_the_timeline(sample_app):
    at = sample_app
    at.session_state["timeline.patient"] = "CADM-0007"
    at.switch_page("views/timeline.py").run()
    _ok(at)
    assert at.selectbox[0].value == "CADM-0007"
    assert "Patient CADM-0007" in at.get("plotly_chart")[0].proto.spec


def _snippets(at: AppTest) -> list[str]:
    return [c.value for c in at.code if c.language == "python"]


def test_every_reproduce_snippet_executes_and_reproduces_its_result(sample_dir, monkeypatch, tmp_path):
    """Change the rule, the filters and alpha, then visit every page: each Reproduce snippet runs
    and, where it recomputes a registered analysis, gives exactly the result the page shows."""
    import dataclasses

    from analytics import DeriveOptions, ResponseRule, analyze, load
    from analytics.models import ModelOptions

    opts = DeriveOptions(ResponseRule("percent", 40), confirm=True)
    filt = CohortFilter(antibodies=("tif1g",), severity="moderate-severe")
    mopts = dataclasses.replace(ModelOptions(alpha=0.1), period="quarter")
    at = _app()
    at.session_state["analysis.options"] = opts
    at.session_state["cohort.filter"] = filt
    at.session_state["analysis.model_options"] = mopts
    at.session_state["quality.period"] = "quarter"
    snippets = []
    for page in PAGES:
        for _ in _visits(at, page):
            _ok(at)
            snippets += [(page, code) for code in _snippets(at)] if page.endswith("time_to_response.py") else []
        if page == "views/report.py":  # the pack's snippet appears once a pack is built
            at.multiselect(key="report.figures").set_value(["km"])
            at.multiselect(key="report.tables").set_value(["attrition", "km_medians"])
            at.button[0].click().run()
            _ok(at)
        if not page.endswith("time_to_response.py"):
            snippets += [(page, code) for code in _snippets(at)]
    for name in ("km", "cox", "cox_adjusted", "competing", "interval", "adjusted", "table1", "mixed", "quality",
                 "cohort"):
        at.session_state["analyses.name"] = name
        at.switch_page("views/analyses.py").run()
        _ok(at)
        snippets += [(f"analyses:{name}", code) for code in _snippets(at)]
    import shutil

    for name in ("visits.csv", "therapies.csv"):  # run where the snippets may write (the pack's folder)
        shutil.copy(sample_dir / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    prepared, _ = load("visits.csv", "therapies.csv")
    expected = analyze(prepared, opts, models=mopts, cohort=filt).models
    compared = set()
    assert len(snippets) >= 15, [p for p, _ in snippets]
    for page, code in snippets:
        ns: dict = {}
        exec(compile(code, f"<reproduce {page}>", "exec"), ns)
        assert ns["full"].options == opts, page
        if "build_pack(" in code:  # the Report page: the pack of exactly this analysis
            manifest = ns["result"].manifest
            assert manifest["definitions"]["response"] == "percent:40" and manifest["definitions"]["confirm"], page
            assert manifest["filters"]["text"] == filt.describe(), page
            assert {k: v["alpha"] for k, v in manifest["analyses"].items()} == dict.fromkeys(expected.results, 0.1)
            compared.add("pack")
        matches = [n for n, r in expected.results.items() if r.call.code().rstrip() in code]
        if "result" in ns and matches:
            name = matches[0]
            got, want = ns["result"], expected[name]
            assert got.alpha == want.alpha, (page, name)
            if name != "cohort":
                assert got.to_dict() == want.to_dict(), (page, name)
            compared.add(name)
    assert compared >= {"km", "cox_adjusted", "competing", "interval", "adjusted", "table1", "mixed", "quality",
                        "cox", "cohort", "pack"}, compared


def test_table_downloads_are_neutralised_xlsx_and_csv():
    import io

    import openpyxl
    import pandas as pd

    from analytics.display.export import csv_bytes, xlsx_bytes

    df = pd.DataFrame({"patient_id": ["=HYPERLINK(1)", "@x", "ok"], "n": [1, 2, 3]})
    wb = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"lines": df})))
    cells = [c.value for c in wb["lines"]["A"]]
    assert cells == ["Patient", "'=HYPERLINK(1)", "'@x", "ok"]
    assert wb["lines"].freeze_panes == "A2" and wb["lines"]["A1"].font.bold
    assert csv_bytes(df).decode("utf-8-sig").splitlines()[1] == "'=HYPERLINK(1),1"


def test_report_page_builds_a_suppressed_zip(sample_app, tmp_path, monkeypatch):
    import io
    import json
    import zipfile

    import tempfile
    from pathlib import Path

    # a temporary folder of this test's own: other processes' packs (a second test run) cannot interfere
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(Path(tempfile.gettempdir()).glob("cdasi-pack-*"))
    at = sample_app.switch_page("views/report.py").run()
    at.radio(key="report.share").set_value(11)
    at.multiselect[0].set_value(["km", "cox_adjusted"])
    at.multiselect[1].set_value(["attrition", "table1", "km_risk_table"])
    at.button[0].click().run()
    _ok(at)
    data, manifest, _ = at.session_state["report.result"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "manifest.json" in names and "report.html" in names and "tables/table1.csv" in names
    assert not any("lines.csv" in n or "swimmer" in n for n in names)
    assert manifest["min_cell"] == 11 and json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    assert [d.label for d in at.get("download_button")][0] == "Download the meeting pack (ZIP)"
    # the uploaded files and the pack were written to a temporary folder, removed before the ZIP is offered
    assert set(Path(tempfile.gettempdir()).glob("cdasi-pack-*")) == before == set()


def test_quality_page_period_indicator_and_drill_down(sample_app):
    at = sample_app.switch_page("views/quality.py").run()
    _ok(at)
    at.radio[0].set_value("quarter").run()
    _ok(at)
    at.selectbox[0].set_value("no_mcid_by_12w").run()
    _ok(at)
    assert at.metric[0].label == "Lines with no MCID by 12 weeks"
    assert at.subheader[-1].value.startswith("Drill-down")
    at.button[0].click().run()  # open the first failing patient's timeline
    _ok(at)
    assert at.session_state["timeline.patient"]


def test_changing_the_interval_level_reaches_every_page():
    """A transition: switch the sidebar's interval level to 90%, then visit every page. No chart
    says 95% any more, the charts with intervals say 90%, and the Cox table is the alpha 0.1 fit."""
    import json

    at = _app()
    at.sidebar.selectbox(key="sidebar.alpha").set_value(0.1).run()
    _ok(at)
    assert at.session_state["analysis.model_options"].alpha == 0.1
    said_90 = 0
    for page in PAGES:
        for tab in _visits(at, page):
            _ok(at)
            for chart in at.get("plotly_chart"):
                text = chart.proto.spec  # the figure JSON the browser receives
                json.loads(text)
                assert "95%" not in text, (page, tab)
                said_90 += "90%" in text
    assert said_90 >= 4
    import numpy as np

    from analytics.protocol import z_value

    at.session_state["ttr.tab"] = "Cox model"
    at.switch_page("views/time_to_response.py").run()
    cox = next(df.value for df in at.dataframe
               if list(df.value.columns)[:8] == ["Term", "Lines", "Responses", "log HR", "SE", "Hazard ratio",
                                                 "Lower limit", "Upper limit"])
    num = cox[["log HR", "SE", "Upper limit"]].astype(float)  # tables for people: text, 2-3 decimals
    # a 95% interval would be 19% wider; the page shows the limit to 2 decimals, coef and SE to 3
    np.testing.assert_allclose(np.log(num["Upper limit"]), num["log HR"] + z_value(0.1) * num["SE"], atol=0.012)


SPEC = ('[response]\nrule = "percent:40"\nconfirm = true\n[cohort]\nseverity = "moderate-severe"\n[models]\nalpha = 0.1\n'
        '[pack]\nmin_cell = 11\nfigures = ["km"]\ntables = ["attrition", "km_medians", "cox_adjusted", '
        '"quality_indicators", "table1"]\n')


def test_an_opened_spec_reaches_every_surface_and_its_pack_equals_the_clis(tmp_path, sample_dir, capsys):
    """Open a spec in the sidebar: the sidebar, the pages and the Report page's choices follow
    it; the pack built on the page and `cdasi-outcomes report --spec` for the same spec hold the
    same tables, cell for cell. Changing the rule afterwards marks the built pack out of date."""
    import csv
    import io
    import zipfile

    from analytics.cli import main

    at = _app()
    at.session_state["analysis.pending_spec"] = (SPEC, "analysis.toml")
    at.run()
    _ok(at)
    assert any("Opened analysis.toml" in s.value for s in at.sidebar.success)
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "`percent:40` (confirmed)" in sidebar and "baseline moderate-severe" in sidebar
    assert at.sidebar.selectbox(key="sidebar.alpha").value == 0.1
    at.switch_page("views/time_to_response.py").run()
    _ok(at)
    assert "fell by at least 40%" in " ".join(c.value for c in at.caption)
    bash = [c.value for c in at.code if c.language == "bash"]
    assert bash and all("--spec analysis.toml" in c for c in bash)  # the filters reach the CLI through the spec
    at.switch_page("views/report.py").run()
    _ok(at)
    assert at.radio(key="report.share").value == 11
    assert at.multiselect(key="report.figures").value == ["km"]
    at.button[0].click().run()
    _ok(at)
    data, manifest, _ = at.session_state["report.result"]
    assert manifest["spec"]["response"]["rule"] == "percent:40" and manifest["min_cell"] == 11

    spec_file = tmp_path / "analysis.toml"
    spec_file.write_text(SPEC, encoding="utf-8")
    assert main(["report", str(sample_dir / "visits.csv"), "--therapies", str(sample_dir / "therapies.csv"),
                 "--spec", str(spec_file), "--out", str(tmp_path / "cli")]) == 0, capsys.readouterr().err
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = [n.removeprefix("tables/").removesuffix(".csv") for n in zf.namelist()
             if n.startswith("tables/") and n.endswith(".csv")]
    assert sorted(names) == sorted(["attrition", "km_medians", "cox_adjusted", "quality_indicators", "table1",
                                    "data_dictionary"])
    for name in names:
        page = list(csv.reader(io.StringIO(zf.read(f"tables/{name}.csv").decode("utf-8-sig"))))
        cli = list(csv.reader(open(tmp_path / "cli" / "tables" / f"{name}.csv", encoding="utf-8-sig")))
        assert page == cli, name

    # a change of rule after the pack was built: the pack says it is out of date
    at.session_state["analysis.pending_spec"] = (SPEC.replace("percent:40", "points:4"), "other.toml")
    at.run()
    _ok(at)
    assert any("Out of date" in w.value for w in at.warning)


def test_a_bad_spec_changes_nothing_and_says_why():
    at = _app()
    at.session_state["analysis.pending_spec"] = ('[cohort]\nantibody = ["mda5"]\n', "bad.toml")
    at.run()
    _ok(at)
    assert any("[cohort] antibody: unknown key" in e.value and "unchanged" in e.value for e in at.sidebar.error)
    assert "Filters:** none" in " ".join(m.value for m in at.sidebar.markdown)


@pytest.mark.parametrize("kind,shown,rule", [("percent", 40.0, "percent:40"), ("atmost", 14.0, "atmost:14"),
                                             ("clear", None, "clear")])
def test_each_rule_kind_brings_its_own_default(kind, shown, rule):
    """Regression: choosing "percent" kept the value 4 ("fell by at least 4%"), atmost kept it too,
    and the value box stayed editable for "clear"."""
    at = _app()
    at.switch_page("views/time_to_response.py").run()
    at.selectbox(key="ttr.kind").set_value(kind).run()
    _ok(at)
    box = at.number_input(key=f"ttr.value.{kind}")
    if shown is None:
        assert box.disabled
    else:
        assert box.value == shown and not box.disabled
    at.button[0].click().run()
    _ok(at)
    assert str(at.session_state["analysis.options"].response) == rule


def test_changing_the_dataset_under_active_filters():
    """Regression: an antibody filter stayed "active" on an export without an antibody column (and
    Cohort crashed with StreamlitDefaultNotInOptionsError); calendar years stayed active on a
    visit_day export. Now: a notice, no exception, and the sidebar shows what is applied."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(TINY.decode())))
    drop = rows[0].index("antibody")
    no_antibody = "\n".join(",".join(r[:drop] + r[drop + 1:]) for r in rows).encode() + b"\n"
    at = _app()
    at.session_state["cohort.filter"] = CohortFilter(antibodies=("mda5",), period=(2018, 2025), ild="yes",
                                                     line_numbers=(1, 9))
    at.run()
    _ok(at)
    at.session_state["data.files"] = DatasetFiles((no_antibody, "no_antibody.csv"), label="no_antibody.csv")
    at.run()
    _ok(at)
    notices = " ".join(w.value for w in at.sidebar.warning)
    assert "antibody filter (mda5) was dropped: this export has no antibody column" in notices
    assert "calendar years filter was dropped: the export gives days, not dates" in notices
    applied = at.session_state["cohort.filter"]
    assert applied.antibodies == () and applied.period is None and applied.ild == "yes"
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "**Filters:** " + "; ".join(applied.describe()) in sidebar
    assert "antibody:" not in sidebar and "lines started" not in sidebar
    for page in PAGES:
        at.switch_page(page).run()
        _ok(at)


def test_a_link_reopens_the_analysis_and_the_url_follows_changes():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["response.rule"] = "percent:40"
    at.query_params["cohort.ild"] = "no"
    at.query_params["models.alpha"] = "0.1"
    at.run()
    _ok(at)
    assert str(at.session_state["analysis.options"].response) == "percent:40"
    assert at.session_state["cohort.filter"].ild == "no" and at.session_state["analysis.model_options"].alpha == 0.1
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "percent:40" in sidebar and "ILD: no" in sidebar
    at.switch_page("views/time_to_response.py").run()
    _ok(at)
    at.selectbox(key="ttr.kind").set_value("atmost").run()
    at.button[0].click().run()
    _ok(at)
    assert at.query_params["response.rule"] in ("atmost:14", ["atmost:14"])
    assert at.query_params["cohort.ild"] in ("no", ["no"])


def test_a_bad_link_changes_nothing_and_says_why():
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["cohort.antibody"] = "mda5"
    at.run()
    _ok(at)
    assert any("cohort.antibody: unknown key" in e.value for e in at.sidebar.error)
    assert not at.session_state["cohort.filter"].active


def test_a_quality_target_set_on_the_page_reaches_the_chart_the_spec_and_is_replaced_by_an_opened_spec():
    """Transitions: a target and a direction set on Quality are drawn on the run chart, kept in
    the analysis spec (TOML and link), and an opened spec replaces them (no stale widget)."""
    at = _app()
    at.switch_page("views/quality.py").run()
    _ok(at)
    assert at.selectbox(key="quality.indicator").value == "cdasi_documented"
    at.number_input(key="quality.target.cdasi_documented").set_value(95.0).run()
    _ok(at)
    spec = at.session_state["analysis.model_options"]
    assert dict(spec.targets) == {"cdasi_documented": 95.0}
    chart = at.get("plotly_chart")[0].proto.spec
    assert "target (95%)" in chart and "target 95%" in chart
    from analytics.spec import AnalysisSpec

    saved = AnalysisSpec(models=spec)
    assert "[quality.targets]" in saved.to_toml() and saved.to_query()["quality.targets"] == "cdasi_documented:95"
    at.radio(key="quality.better.cdasi_documented").set_value("lower").run()
    _ok(at)
    assert dict(at.session_state["analysis.model_options"].better) == {"cdasi_documented": "lower"}
    assert "lower is better" in at.get("plotly_chart")[0].proto.spec

    at.session_state["analysis.pending_spec"] = ('[quality.targets]\nassessed_by_12w = 90\n', "analysis.toml")
    at.run()
    _ok(at)
    opts = at.session_state["analysis.model_options"]
    assert dict(opts.targets) == {"assessed_by_12w": 90.0} and dict(opts.better) == {}
    assert at.number_input(key="quality.target.cdasi_documented").value is None
    assert "higher is better" in at.get("plotly_chart")[0].proto.spec


def test_the_data_page_keeps_an_upload_in_the_library_and_opens_it_again(tmp_path, monkeypatch):
    """Transitions: upload -> keep in the library -> the sample -> open the stored dataset: every
    page names it, and the library's audit log has the import and the opening."""
    from analytics.library import Library

    url = f"sqlite:///{tmp_path / 'library.sqlite'}"
    monkeypatch.setenv("CDASI_DB", url)
    monkeypatch.setenv("CDASI_USER", "dr.alice")
    at = _app(DatasetFiles((TINY, "tiny.csv"), label="tiny.csv"))
    at.radio(key="data.source").set_value("Upload an export").run()
    _ok(at)
    at.text_input(key="data.keep_label").set_value("Tiny export, Q4")
    at.button(key="FormSubmitter:data.keep-Keep in the library").click().run()
    _ok(at)
    assert any("Stored as dataset 1: Tiny export, Q4" in s.value for s in at.success)
    lib = Library(url)
    assert [(d.id, d.label, d.imported_by) for d in lib.datasets()] == [(1, "Tiny export, Q4", "dr.alice")]

    at.radio(key="data.source").set_value("Sample cohort (synthetic)").run()
    at.button(key="data.use_sample").click().run()
    _ok(at)
    assert "Sample cohort" in " ".join(m.value for m in at.sidebar.markdown)
    at.radio(key="data.source").set_value("From the library").run()
    _ok(at)
    assert at.selectbox(key="data.library_id").value == 1
    at.button(key="data.library_open").click().run()
    _ok(at)
    assert "Tiny export, Q4 (dataset 1)" in " ".join(m.value for m in at.sidebar.markdown)
    assert at.session_state["data.files"].dataset_id == 1
    at.switch_page("views/cohort.py").run()
    _ok(at)
    assert "Tiny export, Q4 (dataset 1)" in " ".join(m.value for m in at.sidebar.markdown)
    log = lib.audit_log()
    assert [(r.user, r.action, r.dataset_id) for r in log if r.action != "view"] == [("dr.alice", "import", 1),
                                                                                    ("dr.alice", "open", 1)]
    # the upload's validation report names rows: looking at it is a view of patient-level data
    assert ("view", None, "the validation report") in [(r.action, r.dataset_id, r.detail) for r in log]


def test_the_quality_page_draws_run_charts_from_every_stored_export(tmp_path, monkeypatch, sample_dir):
    from analytics.library import Library

    url = f"sqlite:///{tmp_path / 'library.sqlite'}"
    Library(url).import_files(sample_dir / "visits.csv", sample_dir / "therapies.csv", label="2025", user="alice")
    monkeypatch.setenv("CDASI_DB", url)
    at = _app()
    at.switch_page("views/quality.py").run()
    at.toggle(key="quality.history").set_value(True).run()
    _ok(at)
    assert any("Periods from the stored exports dataset 1" in c.value for c in at.caption)
    assert any("From dataset" in df.value.columns for df in at.dataframe)


def test_the_audit_log_page_reads_the_library_and_filters_it(tmp_path, monkeypatch, sample_dir):
    from analytics.library import Library

    url = f"sqlite:///{tmp_path / 'library.sqlite'}"
    lib = Library(url)
    lib.import_files(sample_dir / "visits.csv", label="2025", user="alice")
    lib.delete(1, "carol")
    monkeypatch.setenv("CDASI_DB", url)
    monkeypatch.setenv("CDASI_USER", "dr.bob")
    at = _app()
    at.switch_page("views/audit.py").run()
    _ok(at)
    table = at.dataframe[0].value
    # newest first: the Data page's validation report (it names patients), seen when the app opened
    assert table["Action"].tolist() == ["view", "delete", "import"]
    assert table["User"].tolist() == ["dr.bob", "carol", "alice"]
    at.multiselect(key="audit.actions").set_value(["import"]).run()
    assert at.dataframe[0].value["Action"].tolist() == ["import"]
    assert any("1 of 3 records" in c.value for c in at.caption)


def test_the_compare_page_puts_two_stored_exports_side_by_side(tmp_path, monkeypatch, sample_dir):
    """Two exports, the later one with a changed score: the page shows the four tables, the
    changed visit among the retroactive changes, and the comparison in the audit log."""
    import pandas as pd

    from analytics.library import Library

    url = f"sqlite:///{tmp_path / 'library.sqlite'}"
    lib = Library(url)
    visits = pd.read_csv(sample_dir / "visits.csv", dtype=str, keep_default_na=False)
    first = tmp_path / "q3.csv"
    visits.to_csv(first, index=False)
    visits.loc[0, "cdasi_activity"] = str(int(visits.loc[0, "cdasi_activity"]) + 7)
    second = tmp_path / "q4.csv"
    visits.to_csv(second, index=False)
    lib.import_files(first, label="Q3", user="alice")
    lib.import_files(second, label="Q4", user="alice")
    monkeypatch.setenv("CDASI_DB", url)
    at = _app()
    at.switch_page("views/compare.py").run()
    _ok(at)
    assert (at.selectbox(key="compare.a").value, at.selectbox(key="compare.b").value) == (1, 2)
    assert [s.value for s in at.subheader] == ["Quality indicators", "Patients, visits and lines",
                                              "Outcomes per arm", "Values changed retroactively"]
    changes = at.dataframe[3].value
    assert len(changes) == 1 and visits.loc[0, "patient_id"] in changes.to_csv()
    assert ("compare", 2) in [(r.action, r.dataset_id) for r in lib.audit_log()]


@pytest.fixture
def fitted(monkeypatch) -> list[str]:
    """The names of the analyses fitted from now on, in order (a spy on registry.fit_entry)."""
    import analytics.registry as registry

    names: list[str] = []
    real = registry.fit_entry

    def spy(e, ctx):
        names.append(e.name)
        return real(e, ctx)

    monkeypatch.setattr(registry, "fit_entry", spy)
    return names


def test_time_to_response_fits_only_the_open_tab(fitted):
    """A first visit fits the Kaplan-Meier analysis alone (a page's first visit at 10,000 patients
    fitted all six for 8.9 s); each tab, once opened, fits and draws its own analyses."""
    files = DatasetFiles((TINY.replace(b"\nT", b"\nV"), "ttr-tabs.csv"))  # its own bytes: nothing cached yet
    at = _app(files)
    _ok(at)
    fitted.clear()
    at.switch_page("views/time_to_response.py").run()
    _ok(at)
    assert fitted == ["km"], fitted
    assert len(at.get("plotly_chart")) == 1
    expected = {"Cox model": ({"cox", "cox_adjusted"}, 2), "Competing risks": ({"competing"}, 1),
                "Interval censoring": ({"interval"}, 1), "Adjusted (weighted)": ({"adjusted"}, 0)}
    for tab, (names, charts) in expected.items():
        fitted.clear()
        at.session_state["ttr.tab"] = tab
        at.run()
        _ok(at)
        assert set(fitted) == names, (tab, fitted)
        assert len(at.get("plotly_chart")) >= charts, tab


def test_shared_summary_fits_only_the_open_section(fitted):
    """The shared summary shows a tab per section of the pack. A first visit fits the first
    section's analyses and the Kaplan-Meier counts (which decide the arms too small to draw), not
    every analysis (5.4 s at 10,000 patients); each tab fits its own when opened, and every
    section still shows what the pack shows."""
    import analytics.registry as registry

    files = DatasetFiles((TINY.replace(b"\nT", b"\nS"), "summary-tabs.csv"))  # its own bytes: nothing cached
    at = _app(files)
    _ok(at)
    fitted.clear()
    at.switch_page("views/summary.py").run()
    _ok(at)
    headings = list(dict.fromkeys(e.heading for e in registry.entries()))
    assert at.session_state["summary.tab"] == headings[0] == "Cohort and attrition"
    assert sorted(fitted) == ["cohort", "km"], fitted
    assert at.dataframe  # the attrition table
    done = {"cohort", "km"}
    for heading in headings[1:]:
        fitted.clear()
        at.session_state["summary.tab"] = heading
        at.run()
        _ok(at)
        expected = {e.name for e in registry.entries() if e.heading == heading} - done
        assert set(fitted) == expected, (heading, fitted)
        done |= expected
        assert at.dataframe or at.get("plotly_chart") or at.info, heading
    fitted.clear()
    at.session_state["summary.tab"] = "Mixed model"
    at.run()
    assert fitted == []  # cached
