"""Tables for people (analytics.display.tables): hand-checkable cells, and properties that no
number is ever printed in scientific notation or as inf/NaN/None."""

import io
import math
import re

import numpy as np
import openpyxl
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.display.export import csv_bytes, xlsx_bytes
from analytics.display.tables import (MISSING, antibody_text, column, dictionary, for_people, for_sheet, number_text,
                                      p_text, term_text)

FORBIDDEN = re.compile(r"\b(nan|NaN|inf|Infinity|None|NaT)\b|\d[eE][+-]\d|00:00:00")


def test_cells_read_as_text_by_hand():
    df = pd.DataFrame({
        "arm": ["MMF", "IVIG", ""], "lines": [275.0, 231.0, 3.0], "median": [11.571, float("inf"), np.nan],
        "cum_12w": [0.5172, 0.488, np.nan], "p": [3e-9, 0.0043, 0.43554], "hr": [1.19356, np.nan, 2.0],
        "term": ["arm[T.IVIG]", "weeks:arm[T.JAKi]", "baseline_cdasi"],
        "antibody": ["mda5;tif1g", "negative", None], "agent": ["ivig", "mycophenolate", "tofacitinib"],
        "visit_date": pd.to_datetime(["2021-03-04 00:00:00", "2022-01-01 00:00:00", None]), "ongoing": [True, False, True],
    })
    out = for_people(df)
    assert list(out.columns) == ["Arm", "Lines", "Median time to response (weeks)",
                                 "Cumulative response by 12 weeks (%)", "p", "Hazard ratio", "Term", "Antibody", "Agent",
                                 "Visit date", "Ongoing"]
    assert out.iloc[0].tolist() == ["MMF", "275", "11.6", "51.7%", "< 0.001", "1.19", "IVIG vs reference arm",
                                    "anti-MDA5, anti-TIF1-gamma", "IVIG", "2021-03-04", "yes"]
    assert out.iloc[1].tolist() == ["IVIG", "231", "not reached", "48.8%", "0.004", MISSING,
                                    "weeks × JAKi (slope difference)", "antibody negative", "Mycophenolate",
                                    "2022-01-01", "no"]
    assert out.iloc[2].tolist()[:6] == ["(no arm)", "3", MISSING, MISSING, "0.44", "2.00"]
    assert not FORBIDDEN.search(out.to_csv(index=False))


def test_p_values_and_small_numbers():
    assert [p_text(p) for p in (0.0, 1e-300, 0.000999, 0.001, 0.0096, 0.01, 0.049, 1.0, np.nan)] == \
        ["< 0.001", "< 0.001", "< 0.001", "0.001", "0.010", "0.01", "0.05", "1.00", MISSING]
    assert number_text(4.2e-4) == "0.00042" and number_text(-6.26e3, 1) == "-6,260.0" and number_text(0, 2) == "0.00"
    assert antibody_text("mi2;sae") == "anti-Mi-2, anti-SAE" and term_text("Intercept") == "Intercept"


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(0, 6))
def test_no_number_is_ever_printed_in_scientific_notation(x, digits):
    for kind in ("number", "weeks", "p", "ratio", "proportion", "count"):
        df = pd.DataFrame({"v": [x]})
        text = for_people(df.rename(columns={"v": {"number": "estimate", "weeks": "median", "p": "p", "ratio": "hr",
                                                   "proportion": "cum_12w", "count": "lines"}[kind]})).iloc[0, 0]
        assert not FORBIDDEN.search(text), (kind, x, text)
    if math.isfinite(x):
        assert "e" not in number_text(x, digits).lower()


def test_quality_values_carry_their_unit_and_the_key_gives_way_to_the_name():
    df = pd.DataFrame({"key": ["cdasi_documented", "median_visit_interval"], "name": ["CDASI documented", "Interval"],
                       "numerator": [6255.0, np.nan], "denominator": [6680, 5880], "value": [93.6377, 91.0],
                       "unit": ["%", "days"]})
    out = for_people(df)
    assert list(out.columns) == ["Indicator", "Numerator", "Denominator", "Value"]
    assert out.values.tolist() == [["CDASI documented", "6,255", "6,680", "93.6%"], ["Interval", MISSING, "5,880", "91 days"]]


def test_sheet_keeps_numbers_as_numbers_with_formats():
    df = pd.DataFrame({"arm": ["MMF"], "lines": [275], "median": [float("inf")], "cum_12w": [0.517], "p": [3e-9],
                       "visit_date": pd.to_datetime(["2021-03-04"])})
    frame, formats = for_sheet(df)
    assert frame.iloc[0].tolist()[:5] == ["MMF", 275, "not reached", 0.517, 3e-9]
    assert formats["Cumulative response by 12 weeks (%)"] == "0.0%" and formats["p"].startswith("[<0.001]")
    wb = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"km_medians": df})))
    ws = wb["km_medians"]
    assert ws["B2"].value == 275 and ws["D2"].number_format == "0.0%" and ws["E2"].number_format.startswith("[<0.001]")
    assert ws["F2"].number_format == "yyyy-mm-dd" and ws["F2"].value.year == 2021


def test_csv_keeps_machine_names_full_precision_and_a_dictionary():
    df = pd.DataFrame({"arm": ["MMF"], "median": [float("inf")], "cum_12w": [0.5172732085424161]})
    plain = csv_bytes(df).decode("utf-8-sig")
    assert plain.splitlines() == ["arm,median,cum_12w", "MMF,,0.5172732085424161"]  # inf is an empty cell (null)
    from analytics.spec import AnalysisSpec

    stamped = csv_bytes(df, AnalysisSpec().stamp("cohort", "v.csv", "km_medians"), "km_medians").decode("utf-8-sig")
    assert "#   cum_12w: Cumulative response by 12 weeks (%), number; Kaplan-Meier cumulative response" in stamped
    back = pd.read_csv(io.StringIO(stamped), comment="#")
    assert list(back.columns) == ["arm", "median", "cum_12w"]


def test_dictionary_describes_table1_arm_columns_and_timed_columns():
    d = dictionary({"table1": pd.DataFrame(columns=["characteristic", "MMF", "SMD"]),
                    "competing_risks": pd.DataFrame(columns=["response_12w_lower", "stopped_24w"])})
    assert (d["description"] != "").all()
    assert column("response_12w_lower").label == "Cumulative incidence of response by 12 weeks, lower limit"
    assert "arm MMF" in d.loc[d["column"] == "MMF", "description"].item()
