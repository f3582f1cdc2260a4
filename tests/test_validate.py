"""Every validation rule, each with a fixture that triggers it and says where (column, rows, ids)."""

from __future__ import annotations

import pytest

from analytics.ingest.validate import RULES

from .conftest import prep

V = "patient_id,visit_day,cdasi_activity,systemic_therapy\n"
OK = V + "P1,0,20,MMF\nP1,30,10,MMF\n"
TD = "patient_id,drug,start_day,stop_day,stop_reason\n"

# rule -> (visits, therapies, mapping, expected severity, expected column, expected rows)
CASES = {
    "empty_file": ("", None, None, "error", "", ()),
    "duplicate_column": ("patient_id,Patient ID,visit_day,cdasi_activity\nP1,P1,0,20\n", None, None, "error",
                         "patient_id", ()),
    "missing_column": ("patient_id,visit_day\nP1,0\n", None, None, "error", "cdasi_activity", ()),
    "identifier_column": (V.strip() + ",Patient Name\nP1,0,20,MMF,Jane Doe\n", None, None, "error",
                          "Patient Name", ()),
    "identifier_value": (V.strip() + ",notes\nP1,0,20,MMF,call 555-123-4567\nP1,30,10,MMF,ok\n", None, None,
                         "error", "notes", (2,)),
    "identifier_birth_date": ("patient_id,visit_date,cdasi_activity,f1\n" + "".join(
        f"P{i},2020-0{k}-01,20,19{50 + i}-0{1 + i}-1{i}\n" for i in range(5) for k in (1, 4)), None, None, "error",
        "f1", tuple(range(2, 12))),
    "identifier_person_name": ("patient_id,visit_day,cdasi_activity,f2\n" + "".join(
        f"P{i},{d},20,{n}\n" for i, n in enumerate(["Ana Ruiz", "Jan de Vries", "Marie Dupont", "Luca Bianchi",
                                                    "Hans Weber"]) for d in (0, 30)), None, None, "error", "f2",
        tuple(range(2, 12))),
    "identifier_patient_id": ("patient_id,visit_day,cdasi_activity\nMRN1000123,0,20\nMRN1000123,30,10\n", None, None,
                              "error", "patient_id", (2, 3)),
    "patient_id_override": ("patient_id,visit_day,cdasi_activity\nMRN1000123,0,20\n", None,
                            {"patient_id_override": "registry numbers issued by the study office"}, "info",
                            "patient_id", ()),
    "age_over_89": (V.strip() + ",age_at_onset\nP1,0,20,MMF,91\nP2,0,20,MMF,90+\n", None, None, "error",
                    "age_at_onset", (2,)),
    "missing_patient_id": (V + ",0,20,MMF\nP1,30,10,MMF\n", None, None, "error", "patient_id", (2,)),
    "missing_visit_time": (V + "P1,,20,MMF\nP1,30,10,MMF\n", None, None, "error", "visit_day", (2,)),
    "bad_date": ("patient_id,visit_date,cdasi_activity\nP1,2020-01-01,20\nP1,March 2nd,10\n", None, None,
                 "error", "visit_date", (3,)),
    "ambiguous_date": ("patient_id,visit_date,cdasi_activity\nP1,2020-01-01,20\nP1,03/02/2020,10\n", None, None,
                       "error", "visit_date", (3,)),
    "bad_day": (V + "P1,0,20,MMF\nP1,3.5,10,MMF\nP1,x,10,MMF\n", None, None, "error", "visit_day", (3, 4)),
    "not_numeric": (V + "P1,0,twenty,MMF\nP1,30,10,MMF\n", None, None, "error", "cdasi_activity", (2,)),
    "out_of_range": (V + "P1,0,101,MMF\nP1,30,-1,MMF\nP1,60,100,MMF\n", None, None, "error", "cdasi_activity",
                     (2, 3)),
    "duplicate_visit_conflict": (V + "P1,0,20,MMF\nP1,0,22,MMF\nP1,30,10,MMF\n", None, None, "error",
                                 "cdasi_activity", (2, 3)),
    "duplicate_visit_merged": (V + "P1,0,20,MMF\nP1,0,20,MMF\nP1,30,10,MMF\n", None, None, "warning", "",
                               (2, 3)),
    "varies_within_patient": (V.strip() + ",sex\nP1,0,20,MMF,F\nP1,30,10,MMF,M\nP2,0,5,,F\n", None, None,
                              "error", "sex", (2, 3)),
    "unknown_value": (V.strip() + ",antibody\nP1,0,20,MMF,anti-Jo1\nP1,30,10,MMF,anti-Jo1\n", None, None,
                      "warning", "antibody", (2, 3)),
    "unknown_drug": (V + "P1,0,20,Wonderdrug 5 mg\nP1,30,10,MMF\n", None, None, "warning", "systemic_therapy",
                     (2,)),
    "no_therapy_information": ("patient_id,visit_day,cdasi_activity\nP1,0,20\n", None, None, "warning",
                               "systemic_therapy", ()),
    "time_basis_mismatch": (OK, "patient_id,drug,start_date\nP1,MMF,2020-01-01\n", None, "error", "start_day", ()),
    "stop_before_start": (OK, TD + "P1,MMF,50,10,other\n", None, "error", "stop_day", (2,)),
    "episode_overlap": (OK, TD + "P1,MMF,0,50,other\nP1,MMF,40,,\n", None, "error", "drug", (3,)),
    "episodes_merged": (OK, TD + "P1,MMF,0,50,other\nP1,MMF,50,,\n", None, "warning", "drug", (3,)),
    "patient_not_in_visits": (OK, TD + "P1,MMF,0,,\nP9,MMF,0,,\n", None, "warning", "patient_id", (3,)),
    "mapping_unknown_agent": (OK, None, {"drugs": {"wonder": "not-a-drug"}}, "error", "", ()),
    "both_time_columns": ("patient_id,visit_date,visit_day,cdasi_activity\nP1,2020-01-01,0,20\n", None, None,
                          "info", "visit_date", ()),
    "systemic_therapy_ignored": (OK, TD + "P1,MMF,0,,\n", None, "info", "systemic_therapy", ()),
    "not_a_line": (V + "P1,0,20,prednisone;clobetasol\n", None, None, "info", "", ()),
    "visits_without_activity": (V + "P1,0,20,MMF\nP1,30,,MMF\n", None, None, "info", "cdasi_activity", (3,)),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule(rule):
    visits, therapies, mapping, severity, column, rows = CASES[rule]
    p = prep(visits, therapies, mapping)
    hits = [f for f in p.report.findings if f.rule == rule]
    assert hits, p.report.to_text()
    f = hits[0]
    assert f.severity == severity
    assert f.message and (f.fix or severity == "info")
    if column:
        assert column in f.column
    if rows:
        assert f.rows == rows
    assert p.report.ok == (not any(x.severity == "error" for x in p.report.findings))
    text = p.report.to_text()
    assert rule in text


def test_clean_file_has_no_findings_but_info():
    p = prep(OK)
    assert p.report.ok and not p.report.warnings


def test_findings_name_example_patient_ids():
    p = prep(V + "P1,0,101,MMF\nP2,0,150,MMF\n")
    f = next(f for f in p.report.findings if f.rule == "out_of_range")
    assert f.patient_ids == ("P1", "P2")
    assert "P1" in p.report.to_text()
    assert p.report.to_frame().loc[0, "patient_ids"] == "P1, P2"


def test_damage_range_is_0_to_32():
    p = prep(V.strip() + ",cdasi_damage\nP1,0,20,MMF,33\nP1,30,10,MMF,32\n")
    f = next(f for f in p.report.findings if f.rule == "out_of_range")
    assert f.column == "cdasi_damage" and f.rows == (2,)


def test_rows_with_errors_are_counted_not_silently_dropped():
    p = prep(V + ",0,20,MMF\nP1,0,20,MMF\nP1,30,10,MMF\n")
    assert p.counts["rows_read"] == 3 and p.counts["rows_with_errors"] == 1 and p.counts["visits"] == 2
    assert not p.report.ok


def test_patient_level_values_fill_blank_visits():
    p = prep(V.strip() + ",sex,antibody,ild\nP1,0,20,MMF,F,anti-MDA5,yes\nP1,30,10,MMF,,,\n")
    assert p.report.ok
    assert p.visits["sex"].tolist() == ["female", "female"]
    assert p.visits["antibody"].tolist() == ["mda5", "mda5"]
    assert p.visits["ild"].tolist() == [True, True]


def test_antibody_lists_normalise():
    p = prep(V.strip() + ",antibody\nP1,0,20,MMF,TIF1-gamma; NXP2\nP2,0,20,MMF,negative\nP3,0,1,,Anti-SAE\n")
    assert p.visits["antibody"].tolist() == ["nxp2;tif1g", "negative", "sae"]


def test_decimal_comma_in_semicolon_files():
    p = prep("patient_id;visit_day;cdasi_activity;cdasi_damage\nP1;0;20,5;3\n")
    assert p.report.ok and p.visits["cdasi_activity"].tolist() == [20.5]


def test_unknown_drug_message_says_how_to_map_it():
    p = prep(V + "P1,0,20,Wonderdrug\n")
    f = next(f for f in p.report.findings if f.rule == "unknown_drug")
    assert "Wonderdrug" in f.message and "[drugs]" in f.fix


def test_mapping_maps_drug_synonyms():
    p = prep(V + "P1,0,20,Wonderdrug\nP1,30,10,Wonderdrug\n", mapping={"drugs": {"Wonderdrug": "CellCept"}})
    assert "unknown_drug" not in p.report.rules()
    assert p.visits["agents"].tolist() == [("mycophenolate",), ("mycophenolate",)]


def test_therapies_with_dates_convert_to_days_from_first_visit():
    p = prep("patient_id,visit_date,cdasi_activity\nP1,2020-01-01,20\nP1,2020-02-01,10\n",
             "patient_id,drug,start_date,stop_date,stop_reason\nP1,MMF,2020-01-11,2020-03-01,side effects\n")
    assert p.report.ok
    ep = p.therapies.iloc[0]
    assert (ep["start_day"], ep["stop_day"], ep["stop_reason"]) == (10, 60, "adverse_event")


def test_unrecognised_stop_reason_is_a_warning_and_other():
    p = prep(OK, TD + "P1,MMF,0,20,fell out with doctor\n")
    assert "unknown_value" in p.report.rules() and p.therapies["stop_reason"].tolist() == ["other"]


def test_report_to_dict_is_json_safe():
    import json

    p = prep(V + "P1,0,101,MMF\n")
    d = p.report.to_dict()
    json.dumps(d)
    assert d["valid"] is False and d["errors"] == 1


def test_one_vocabulary_for_antibodies_and_stop_reasons():
    """The canonical codes are the targets of the aliases, and the fix texts name exactly them."""
    from analytics.ingest.schema import ANTIBODIES, ANTIBODY_ALIASES, STOP_REASON_ALIASES, STOP_REASONS

    assert set(ANTIBODY_ALIASES.values()) == set(ANTIBODIES)
    assert set(STOP_REASON_ALIASES.values()) == set(STOP_REASONS)



# ------------------------------------------------------------------ day-first dates (European exports)
DMY = "patient_id;visit_date;cdasi_activity;systemic_therapy\n"


@pytest.mark.parametrize("sep", [".", "/", "-"])
def test_day_first_dates_are_read_when_a_day_above_12_shows_the_order(sep):
    p = prep(DMY + f"P1;03{sep}02{sep}2021;20;MMF\nP1;25{sep}02{sep}2021;12;MMF\nP1;2021-03-30;8;MMF\n")
    assert p.report.ok, p.report.to_text()
    assert p.visits["visit_date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-02-03", "2021-02-25", "2021-03-30"]


def test_month_first_dates_are_read_when_a_second_number_above_12_shows_it():
    p = prep(DMY + "P1;03/02/2021;20;MMF\nP1;03/25/2021;12;MMF\n")
    assert p.report.ok, p.report.to_text()
    assert p.visits["visit_date"].dt.strftime("%Y-%m-%d").tolist() == ["2021-03-02", "2021-03-25"]


def test_ambiguous_day_first_dates_name_the_option_and_the_option_settles_them():
    text = DMY + "P1;03.02.2021;20;MMF\nP1;04.03.2021;12;MMF\n"
    p = prep(text)
    (hit,) = [f for f in p.report.findings if f.rule == "ambiguous_date"]
    assert not p.report.ok and "date_format" in hit.fix and "--date-format" in hit.fix and hit.rows == (2, 3)
    assert not [f for f in p.report.findings if f.rule == "bad_date"]  # one clear error, not two
    p = prep(text, mapping={"date_format": "dmy"})
    assert p.report.ok and p.visits["visit_date"].dt.month.tolist() == [2, 3]
    p = prep(text, mapping={"date_format": "mdy"})
    assert p.report.ok and p.visits["visit_date"].dt.month.tolist() == [3, 4]


def test_day_first_dates_in_the_therapies_file_and_iso_only():
    visits = DMY + "P1;03.02.2021;20;\nP1;25.03.2021;12;\n"
    therapies = "patient_id;drug;start_date;stop_date\nP1;MMF;03.02.2021;\n"
    p = prep(visits, therapies)
    assert p.report.ok, p.report.to_text()
    assert p.therapies["start_day"].tolist() == [0]
    p = prep(visits, mapping={"date_format": "ymd"})  # ISO only: day-first values are unreadable
    assert [f.rule for f in p.report.errors] == ["bad_date"]


def test_a_bad_date_format_in_the_mapping_is_refused():
    from analytics import MappingError
    from analytics.ingest.io import mapping_from_dict

    with pytest.raises(MappingError, match="date_format = 'dd.mm'"):
        mapping_from_dict({"date_format": "dd.mm"})


def test_cli_date_format_flag(tmp_path, capsys):
    from analytics.cli import main

    f = tmp_path / "v.csv"
    f.write_text(DMY + "P1;03.02.2021;20;MMF\nP1;04.03.2021;12;MMF\n")
    assert main(["validate", str(f)]) == 1
    assert "ambiguous_date" in capsys.readouterr().out
    assert main(["validate", str(f), "--date-format", "dmy"]) == 0


def test_distinct_values_are_found_once_per_column_and_only_while_validating(monkeypatch):
    import numpy as np
    import pandas as pd

    import analytics.ingest.distinct as distinct_mod
    from analytics.ingest.distinct import distinct, shared_factorization

    frame = pd.DataFrame({"a": ["x", "y", "x", "", "y"], "b": ["1", "1", "2", "2", "1"]})
    calls = []
    real = pd.factorize
    monkeypatch.setattr(distinct_mod.pd, "factorize", lambda v, **k: calls.append(1) or real(v, **k))
    with shared_factorization(frame):
        codes, uniques = distinct(frame["a"])
        again = distinct(frame["a"])
        derived = frame["a"].str.upper()
        distinct(derived)
        distinct(derived)
    assert codes.dtype == np.int8 and list(uniques) == ["x", "y", ""] and list(codes) == [0, 1, 0, 2, 1]
    assert again[0] is codes and len(calls) == 3  # the column once, the derived series each time
    distinct(frame["a"])
    assert len(calls) == 4  # outside the block, nothing is kept


def test_a_stripped_column_shares_its_distinct_values_while_validating(monkeypatch):
    """A per-unique parser's text output (stripped, lower-cased) gets its distinct values from its
    input's, so the blank and number checks after it do not factorise it again; duplicates that the
    parser makes (" x" and "x") are merged, in order of appearance. The output stays writeable:
    pandas 2.1 cannot compare read-only object arrays (the minimum-versions run found that); and
    it is held weakly, so the record goes when the column does."""
    import pandas as pd

    import analytics.ingest.distinct as distinct_mod
    from analytics.ingest.distinct import distinct, shared_factorization
    from analytics.ingest.validate import _strip, _strip_lower

    frame = pd.DataFrame({"a": [" X", "x ", "Y", " X", None]})
    with shared_factorization(frame):
        stripped = _strip_lower(frame["a"])
        calls = []
        real = pd.factorize
        monkeypatch.setattr(distinct_mod.pd, "factorize", lambda v, **k: calls.append(len(v)) or real(v, **k))
        codes, uniques = distinct(stripped)
        assert not calls  # known from the input's
        assert list(uniques[:2]) == ["x", "y"] and pd.isna(uniques[2]) and list(codes) == [0, 0, 1, 0, 2]
        assert stripped.to_numpy().flags.writeable and bool(stripped.eq("x").iloc[0])
        held = distinct_mod._CACHE.get()["derived"]
        assert len(held) == 1
        del stripped, codes, uniques
        assert not held  # held weakly: validation's peak does not carry a derived column it let go
    plain = _strip(frame["a"])  # outside the block: nothing shared, the same values
    assert list(plain[:4]) == ["X", "x", "Y", "X"] and plain.to_numpy().flags.writeable


def test_a_patient_level_value_that_varies_names_the_patients_in_order_and_every_row():
    # patients in the file out of order; two of them vary; the first value is kept for everyone
    p = prep(V.strip() + ",sex,age_at_onset\nP9,0,20,MMF,F,40\nP3,0,20,MMF,M,50\nP9,30,10,MMF,M,40\n"
             "P1,0,5,,F,61\nP3,30,9,MMF,F,50\nP1,30,4,,F,\n")
    f = next(f for f in p.report.findings if f.rule == "varies_within_patient")
    assert f.column == "sex" and f.patient_ids == ("P3", "P9") and f.rows == (2, 3, 4, 6)
    assert "within 2 patient(s)" in f.message
    assert not [f for f in p.report.findings if f.rule == "varies_within_patient" and f.column == "age_at_onset"]


def test_visits_in_any_order_prepare_alike_duplicates_merged_and_patient_values_filled():
    """Validation sorts the visits by patient and day before it merges duplicates and fills the
    patient-level columns (both then work on neighbouring rows): an export in another order gives
    the same visits, with each row's own line number, and the same findings."""
    import pandas as pd

    rows = ["P2,30,10,MMF,,", "P1,0,20,MMF,F,", "P2,0,12,MMF,M,", "P1,30,9,MMF,,", "P1,30,9,MMF,,",
            "P10,0,7,,,", "P2,60,8,MMF,,", "P10,30,6,,,"]
    head = V.strip() + ",sex,antibody\n"
    ordered = prep(head + "\n".join(sorted(rows, key=lambda r: (r.split(",")[0], int(r.split(",")[1])))) + "\n")
    shuffled = prep(head + "\n".join(rows) + "\n")
    for p in (ordered, shuffled):
        v = p.visits
        assert list(zip(v["patient_id"], v["day"])) == [("P1", 0), ("P1", 30), ("P10", 0), ("P10", 30),
                                                         ("P2", 0), ("P2", 30), ("P2", 60)]
        # a patient's sex on every visit, from whichever visit gives it; a patient without one keeps none
        assert v["sex"].tolist()[:2] == ["female"] * 2 and v["sex"].tolist()[4:] == ["male"] * 3
        assert v["sex"].iloc[2:4].isna().all()
        merged = next(f for f in p.report.findings if f.rule == "duplicate_visit_merged")
        assert "1 row(s) repeat" in merged.message and p.counts["duplicate_rows_merged"] == 1
    assert shuffled.visits["row"].tolist() == [3, 5, 7, 9, 4, 2, 8]  # each visit's line in its own file
    assert next(f for f in shuffled.report.findings if f.rule == "duplicate_visit_merged").rows == (5, 6)
    cols = [c for c in ordered.visits.columns if c != "row"]
    pd.testing.assert_frame_equal(ordered.visits[cols], shuffled.visits[cols])


def test_therapy_episodes_in_any_order_merge_and_overlap_alike():
    """Episodes are ordered by patient (as text: P10 before P2), agent, start and row before a
    touching pair is merged and an overlap reported; an export in another order gives the same
    episodes and names the same rows. By hand: P1's MMF 0-50 and 50-80 touch (one episode, 0-80);
    P1's IVIG 100- runs on; P2's MMF 0-30 and 20-40 overlap (row of the later start reported, and
    the two kept as one episode, 0-40); P10's methotrexate 5-9 stands alone."""
    visits = V + "P1,0,20,MMF\nP1,120,10,IVIG\nP2,0,20,MMF\nP10,0,20,MTX\n"
    rows = ["P2,MMF,20,40,other", "P1,MMF,50,80,other", "P10,Methotrexate,5,9,other", "P1,IVIG,100,,",
            "P1,MMF,0,50,other", "P2,MMF,0,30,other"]
    ordered = prep(visits, TD + "\n".join([rows[4], rows[1], rows[3], rows[2], rows[5], rows[0]]) + "\n")
    shuffled = prep(visits, TD + "\n".join(rows) + "\n")
    for p, overlap_row, merged_row in ((ordered, 7, 3), (shuffled, 2, 3)):
        overlap = next(f for f in p.report.findings if f.rule == "episode_overlap")
        merged = next(f for f in p.report.findings if f.rule == "episodes_merged")
        assert overlap.rows == (overlap_row,) and overlap.patient_ids == ("P2",)
        assert merged.rows == (merged_row,) and merged.patient_ids == ("P1",)
        ep = p.therapies
        assert list(zip(ep["patient_id"], ep["agent"], ep["start_day"], ep["stop_day"].fillna(-1))) == [
            ("P1", "ivig", 100, -1), ("P1", "mycophenolate", 0, 80), ("P10", "methotrexate", 5, 9),
            ("P2", "mycophenolate", 0, 40)]


def test_rows_ordered_by_group_then_day_as_lexsort_orders_them():
    """One integer key where it fits, lexsort otherwise: the same stable order either way, with
    negative days, a group code of -1, days given as floats, and a span too wide for one key."""
    import numpy as np

    from analytics.ingest.validate import order_by_group_and_day

    rng = np.random.default_rng(3)
    group = rng.integers(-1, 40, 500)
    for day in (rng.integers(-30, 30, 500), rng.integers(-30, 30, 500).astype(float),
                np.where(rng.random(500) < 0.5, -(2 ** 60), 2 ** 60)):
        assert order_by_group_and_day(group, day).tolist() == np.lexsort((day, group)).tolist()
    assert order_by_group_and_day(np.array([1, 0, 1, 0]), np.array([5, 5, 2, 5])).tolist() == [1, 3, 2, 0]
    assert order_by_group_and_day(np.zeros(0, int), np.zeros(0, int)).tolist() == []
