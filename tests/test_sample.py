"""The committed sample cohort: reproducible from its seed, calibrated, and rich enough for every analysis."""

from __future__ import annotations

import io

import pytest

from analytics import DeriveOptions, analyze, load
from analytics.display.export import neutralise
from analytics.sample import generate


@pytest.fixture(scope="module")
def sample(sample_dir):
    return load(sample_dir / "visits.csv", sample_dir / "therapies.csv")[0]


def test_committed_sample_is_the_generator_output(sample_dir):
    visits, therapies = generate(400, 20210301)
    for df, name in ((visits, "visits.csv"), (therapies, "therapies.csv")):
        buf = io.StringIO()
        neutralise(df).to_csv(buf, index=False, lineterminator="\n")
        assert buf.getvalue() == (sample_dir / name).read_text(), f"regenerate with `make sample` ({name})"


def test_sample_is_valid(sample):
    assert sample.report.ok, sample.report.to_text()
    assert sample.counts["patients"] == 400


@pytest.mark.parametrize("with_therapies", [True, False])
def test_every_arm_has_enough_lines_and_events(sample_dir, with_therapies):
    p, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv" if with_therapies else None)
    res = analyze(p, DeriveOptions()).derivation.to_dict()
    for arm in ("MMF", "IVIG", "JAKi"):
        assert res["by_arm"][arm]["included"] >= 60, (arm, res["by_arm"][arm])
        assert res["by_arm"][arm]["events"] >= 30, (arm, res["by_arm"][arm])


def test_sample_is_calibrated_on_the_published_cohorts(sample):
    v = sample.visits
    patients = v.groupby("patient_id").first()
    assert 0.75 <= (patients["sex"] == "female").mean() <= 0.90
    assert 45 <= patients["age_at_onset"].mean() <= 55
    first_scores = v.dropna(subset=["cdasi_activity"]).groupby("patient_id")["cdasi_activity"].first()
    assert 13 <= first_scores.median() <= 22
    ab = patients["antibody"].value_counts(normalize=True)
    assert 0.25 <= ab["tif1g"] <= 0.40 and 0.18 <= ab["mda5"] <= 0.32
    assert patients.loc[patients["antibody"] == "mda5", "ild"].mean() > 0.4
    # Most patients need a second systemic agent (44-69% in published series; ours is at the top end).
    n_agents = sample.therapies.groupby("patient_id")["agent"].nunique()
    assert 0.44 <= (n_agents.reindex(patients.index, fill_value=0) >= 2).mean() <= 0.9
    # Visits every 4-26 weeks; some scores blank.
    gaps = v.groupby("patient_id")["day"].diff().dropna() / 7
    assert gaps.min() >= 3.9 and gaps.max() <= 26.5
    assert 0.02 <= v["cdasi_activity"].isna().mean() <= 0.10


def test_sample_stop_reasons_cover_the_vocabulary(sample):
    reasons = set(sample.therapies["stop_reason"])
    assert {"inefficacy", "adverse_event", "remission", ""} <= reasons
