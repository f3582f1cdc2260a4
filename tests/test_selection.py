"""Regression: clicking an arm-mean point on Trajectories opened an unrelated patient (the bin's
"n = 64" was taken as a patient id). Only marks that carry a patient id open a timeline."""

from __future__ import annotations

import pytest

from analytics import analyze, load
from analytics.display.plots import PATIENT_MARKS, selected_patient, spaghetti_figure, swimmer_figure


@pytest.fixture(scope="module")
def derivation(sample_dir):
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    return analyze(prepared).derivation


def _event(fig, curve: int, index: int = 0) -> dict:
    trace = fig.data[curve]
    values = [v for v in trace.customdata if v is not None]
    return {"selection": {"points": [{"curve_number": curve, "point_index": index, "customdata": values[index]}]}}


def test_a_mean_point_opens_no_patient_but_a_line_point_does(derivation):
    traj = derivation.trajectories[derivation.trajectories["arm"] != ""]
    fig = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"], "absolute", 52)
    means = [i for i, t in enumerate(fig.data) if "mean" in (t.name or "")]
    lines = [i for i, t in enumerate(fig.data) if " lines" in (t.name or "") and ": mean" not in t.name]
    assert means and lines
    assert all(fig.data[i].meta != PATIENT_MARKS for i in means)
    assert selected_patient(_event(fig, means[0]), fig) is None  # customdata is the bin's n
    patient = selected_patient(_event(fig, lines[0]), fig)
    assert patient in set(derivation.lines["patient_id"])
    # a selection of a mean and then a line point: the line's patient
    both = {"selection": {"points": _event(fig, means[0])["selection"]["points"]
                          + _event(fig, lines[0])["selection"]["points"]}}
    assert selected_patient(both, fig) == patient
    assert selected_patient(None, fig) is None and selected_patient({"selection": {"points": []}}, fig) is None


def test_swimmer_marks_carry_patients(derivation):
    fig = swimmer_figure(derivation, 20)
    marked = [i for i, t in enumerate(fig.data) if t.meta == PATIENT_MARKS]
    assert len(marked) >= 3
    for i in marked:
        assert selected_patient(_event(fig, i), fig) in set(derivation.lines["patient_id"])
