"""The analysis spec (contract.md section 4): parsed and checked when built, round-trips through
TOML, describes itself; unknown tables, keys and values are errors that name them; the CLI's
--spec with flags overriding it; results.json and manifest.json hold the resolved spec."""

from __future__ import annotations

import csv
import json

import pytest

from analytics import OptionError
from analytics.cli import main
from analytics.lines.cohort import CohortFilter
from analytics.lines.options import ResponseRule
from analytics.spec import AnalysisSpec

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _readme_example() -> str:
    section = README[README.index("## Analysis spec"):README.index("## Command line")]
    start = section.index("```toml") + len("```toml")
    return section[start:section.index("```", start)]


def test_the_readme_example_parses_and_round_trips():
    spec = AnalysisSpec.from_toml(_readme_example())
    assert spec.derive.response == ResponseRule("percent", 40) and spec.derive.confirm
    assert spec.cohort == CohortFilter(arms=("MMF", "IVIG"), line_numbers=(2, 9), antibodies=("mda5",),
                                       age=(18, 90), period=(2018, 2025))
    assert spec.models.alpha == 0.05 and spec.models.mixed.horizon_weeks == 24 and spec.models.period == "year"
    assert dict(spec.models.targets) == {"cdasi_documented": 90.0}
    assert dict(spec.models.better) == {"median_visit_interval": "lower"}
    assert spec.pack.min_cell == 5 and spec.pack.figures == ("km", "mixed_model") and spec.pack.tables == ("table1",)
    assert AnalysisSpec.from_toml(spec.to_toml()) == spec
    text = " ".join(spec.describe())
    assert "fell by at least 40%" in text and "antibody: mda5" in text and "95% intervals" in text


def test_empty_spec_is_the_defaults():
    assert AnalysisSpec.from_toml("") == AnalysisSpec()
    assert AnalysisSpec.from_toml(AnalysisSpec().to_toml()) == AnalysisSpec()


@pytest.mark.parametrize("text,message", [
    ("[foo]\na = 1", "unknown table [foo]"),
    ('[response]\nrul = "points:4"', "[response] rul: unknown key"),
    ('[cohort]\nantibody = ["mda5"]', "[cohort] antibody: unknown key"),
    ('[cohort]\nantibodies = ["mda6"]', "[cohort] antibodies: unknown ['mda6']"),
    ('[cohort]\nild = "maybe"', "[cohort] ild = 'maybe'"),
    ('[cohort]\nline_numbers = [9, 2]', "[cohort] line_numbers must be (low, high)"),
    ('[cohort]\narms = ["JAKi"]\n[lines]\narms = ["MMF", "IVIG"]', "not among [lines] arms"),
    ('[lines]\narms = ["XYZ"]', "[lines]"),
    ('[lines]\nbaseline_window_days = [5, 7]', "[lines] baseline_window_days must contain day 0"),
    ('[response]\nrule = "points:x"', "[response]"),
    ('[response]\nconfirm = "yes"', "[response] confirm = 'yes': must be true or false"),
    ("[models]\nalpha = 0.7", "[models] alpha must be between 0 and 0.5"),
    ('[models]\nadjust_for = ["height"]', "[models] adjust_for: unknown ['height']"),
    ('[mixed]\nrandom = "curve"', "[mixed] random = 'curve'"),
    ('[quality]\nperiod = "month"', "[quality] period = 'month'"),
    ("[quality.targets]\ncdasi_documneted = 90", "[quality] quality targets: unknown indicators ['cdasi_documneted']"),
    ('[quality.targets]\ncdasi_documented = "90%"', "[quality] quality targets: {'cdasi_documented': '90%'} must be a number"),
    ('[quality.better]\ncdasi_documented = "more"', "[quality] quality better: {'cdasi_documented': 'more'} must be"),
    ("[quality]\ntargets = 90", "[quality] targets = 90: must be a table"),
    ("[pack]\nmin_cell = 1", "[pack] min_cell must be between 2 and 1000"),
    ('[pack]\nfigures = ["kmm"]', "[pack] figures: unknown ['kmm']"),
    ("[response\n", "is not valid TOML"),
])
def test_every_bad_key_or_value_is_an_error_that_names_it(text, message):
    with pytest.raises(OptionError) as exc:
        AnalysisSpec.from_toml(text)
    assert message in str(exc.value)


def test_cli_spec_with_flags_overriding_and_the_resolved_spec_in_results(tmp_path, sample_dir, capsys):
    spec_file = tmp_path / "analysis.toml"
    spec_file.write_text('[data]\nsha256 = "0000"\n[response]\nrule = "percent:40"\n[cohort]\nantibodies = ["tif1g"]\n'
                         '[models]\nalpha = 0.1\n', encoding="utf-8")
    code = main(["analyze", str(sample_dir / "visits.csv"), "--therapies", str(sample_dir / "therapies.csv"),
                 "--spec", str(spec_file), "--response", "points:5", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0
    assert "Cohort filters: antibody: tif1g" in captured.out
    assert "the spec was saved for a visits file with sha256 0000" in captured.err
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["spec"]["response"] == {"rule": "points:5", "confirm": False}  # the flag wins
    spec_file.write_text('[response]\nconfirm = true\n', encoding="utf-8")
    assert main(["analyze", str(sample_dir / "visits.csv"), "--therapies", str(sample_dir / "therapies.csv"),
                 "--spec", str(spec_file), "--no-confirm", "--out", str(tmp_path / "out2")]) == 0
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["spec"]["response"]["confirm"] is False
    assert doc["spec"]["cohort"]["antibodies"] == ["tif1g"] and doc["spec"]["models"]["alpha"] == 0.1
    assert doc["spec"]["data"]["sha256"] == doc["input"]["sha256"]
    assert doc["cohort"]["filters"] == ["antibody: tif1g"] and doc["definitions"]["alpha"] == 0.1
    assert any(w.startswith("[spec] the spec was saved") for w in doc["warnings"])
    # the resolved spec, saved as TOML, is the same analysis
    again = AnalysisSpec.from_dict(doc["spec"])
    assert again.derive.response == ResponseRule("points", 5) and again.cohort.antibodies == ("tif1g",)


def test_cli_spec_errors_exit_2_before_reading_the_data(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[response]\nrul = "x"\n', encoding="utf-8")
    code = main(["analyze", str(tmp_path / "missing.csv"), "--spec", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "[response] rul: unknown key" in err and "Traceback" not in err
    code = main(["report", str(tmp_path / "missing.csv"), "--spec", str(tmp_path / "nope.toml"),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "cannot read the spec" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_report_spec_equals_build_pack_of_the_same_spec(tmp_path, sample_dir, capsys):
    """The pack from `report --spec` and from build_pack(spec=...) in Python hold the same
    tables, cell for cell, and the manifest records the spec with its pack choices."""
    from analytics.outputs.pack import PackOptions, build_pack

    spec_file = tmp_path / "analysis.toml"
    spec_file.write_text('[response]\nrule = "percent:40"\nconfirm = true\n[cohort]\nseverity = "moderate-severe"\n'
                         '[models]\nalpha = 0.1\n[pack]\nmin_cell = 11\nfigures = ["km"]\n'
                         'tables = ["attrition", "km_medians", "cox_adjusted", "quality_indicators"]\n',
                         encoding="utf-8")
    code = main(["report", str(sample_dir / "visits.csv"), "--therapies", str(sample_dir / "therapies.csv"),
                 "--spec", str(spec_file), "--out", str(tmp_path / "cli")])
    assert code == 0, capsys.readouterr().err
    py = build_pack(sample_dir / "visits.csv", tmp_path / "py", sample_dir / "therapies.csv",
                    options=PackOptions(formats=()), spec=AnalysisSpec.load(spec_file))
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["spec"] == py.manifest["spec"]
    assert manifest["spec"]["pack"] == {"min_cell": 11, "figures": ["km"],
                                        "tables": ["attrition", "km_medians", "cox_adjusted", "quality_indicators"]}
    assert manifest["min_cell"] == 11 and manifest["contents"]["tables"] == py.manifest["contents"]["tables"]
    for name in manifest["contents"]["tables"]:
        read = [list(csv.reader(open(d / "tables" / f"{name}.csv", encoding="utf-8-sig")))
                for d in (tmp_path / "cli", tmp_path / "py")]
        assert read[0] == read[1], name


def test_the_spec_round_trips_through_a_link():
    spec = AnalysisSpec.from_toml(_readme_example())
    query = spec.to_query()
    assert query["response.rule"] == "percent:40" and query["cohort.antibodies"] == "mda5"
    assert "data.sha256" not in query and AnalysisSpec().to_query() == {}
    assert AnalysisSpec.from_query(query) == AnalysisSpec(spec.derive, spec.cohort, spec.models, spec.pack)
    assert AnalysisSpec.from_query({"utm": "x"}) == AnalysisSpec()
    with pytest.raises(OptionError, match="link: cohort.antibody: unknown key"):
        AnalysisSpec.from_query({"cohort.antibody": "mda5"})
    with pytest.raises(OptionError, match=r"\[models\] alpha must be between 0 and 0.5"):
        AnalysisSpec.from_query({"models.alpha": "0.9"})


def test_quality_targets_and_directions_round_trip_through_toml_and_a_link():
    spec = AnalysisSpec.from_toml('[quality]\nperiod = "quarter"\n[quality.targets]\ncdasi_documented = 90\n'
                                  'median_visit_interval = 120\n[quality.better]\nescalated_after_no_mcid = "lower"\n')
    assert dict(spec.models.targets) == {"cdasi_documented": 90.0, "median_visit_interval": 120.0}
    assert dict(spec.models.better) == {"escalated_after_no_mcid": "lower"}
    assert "[quality.targets]" in spec.to_toml() and AnalysisSpec.from_toml(spec.to_toml()) == spec
    query = spec.to_query()
    assert query["quality.targets"] == "cdasi_documented:90,median_visit_interval:120"
    assert AnalysisSpec.from_query(query).models == spec.models
    assert "targets cdasi_documented 90" in " ".join(spec.describe())


def test_the_pack_quality_section_is_the_whole_export_and_the_pack_obeys_the_mixed_spec(tmp_path, sample_dir):
    """Regression: with a filter, the pack computed the line-based quality indicators on the
    filtered lines (209/224) while the Quality page showed the whole export (1230/1318); and the
    mixed-model settings never reached the pack."""
    from analytics import analyze, load
    from analytics.outputs.pack import PackOptions, build_pack

    spec = AnalysisSpec.from_toml('[cohort]\nantibodies = ["tif1g"]\n[mixed]\nrandom = "intercept"\nhorizon_weeks = 12\n'
                                  '[pack]\nfigures = []\ntables = ["quality_indicators", "mixed_fixed_effects"]\n')
    pack = build_pack(sample_dir / "visits.csv", tmp_path / "p", sample_dir / "therapies.csv",
                      options=PackOptions(formats=()), spec=spec)
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    whole = analyze(prepared, models=True).models.quality.summary
    with open(pack.out / "tables" / "quality_indicators.csv", newline="", encoding="utf-8-sig") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    def number(text):
        return float(text) if text else float("nan")

    for r in whole.itertuples():
        for col in ("numerator", "denominator", "value"):
            got, want = number(rows[r.key][col]), float(getattr(r, col))
            assert got == pytest.approx(want, nan_ok=True, rel=1e-9), (r.key, col)
    mixed = pack.manifest["analyses"]["mixed"]["call"]["kwargs"]["spec"]
    assert "random='intercept'" in mixed and "horizon_weeks=12.0" in mixed
    assert pack.manifest["spec"]["mixed"] == {"horizon_weeks": 12.0, "random": "intercept", "levels": "patient/line",
                                              "covariates": []}
