"""Small-cell suppression (analytics.display.suppression): complementary suppression holds in
every filtered cohort's attrition table, so that no hidden count, and no small sum of hidden
counts, can be recovered from a shown total by subtraction."""

from __future__ import annotations

import pytest

from analytics import CohortFilter, analyze, load
from analytics.display.suppression import SUPPRESSED, suppress
from analytics.lines.cohort import apply_filter
from analytics.stats.overview import cohort_overview


@pytest.fixture(scope="module")
def sample(sample_dir):
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    return prepared, analyze(prepared).derivation


def _hidden(cell) -> bool:
    return str(cell).startswith("<") or str(cell) == SUPPRESSED


@pytest.mark.parametrize("filt", [CohortFilter(antibodies=("mi2",)), CohortFilter(antibodies=("sae",)),
                                  CohortFilter(antibodies=("nxp2",), severity="mild"),
                                  CohortFilter(antibodies=("negative",), severity="mild"), CohortFilter()])
@pytest.mark.parametrize("min_cell", [5, 11, 15, 20])
def test_attrition_reveals_nothing_by_subtraction(sample, filt, min_cell):
    prepared, full = sample
    d = apply_filter(full, prepared, filt).derivation
    spec = cohort_overview(d, prepared).tables()["attrition"]
    raw = spec.frame["n"].tolist()
    shown = suppress(spec, min_cell)["n"].tolist()
    assert any(_hidden(c) for c in shown) or not any(0 < n < min_cell for n in raw)
    for i, (n, c) in enumerate(zip(raw, shown)):
        if 0 < n < min_cell:
            assert c == f"<{min_cell}", (i, n, c)   # every small count is hidden
        elif not _hidden(c):
            assert int(c) == n
    for total, parts in spec.sum_groups:
        assert total is None or raw[total] == sum(raw[p] for p in parts)  # the groups really add up
        hidden_parts = [p for p in parts if _hidden(shown[p])]
        if total is not None and not _hidden(shown[total]):
            # a shown total: either nothing hidden below it, or at least two hidden cells whose sum is not small
            assert not hidden_parts or (len(hidden_parts) >= 2 and sum(raw[p] for p in hidden_parts) >= min_cell), (
                total, parts, raw, shown)
        else:
            cells = hidden_parts + ([total] if total is not None else [])
            assert len(cells) != 1 or raw[cells[0]] == 0, (total, parts, raw, shown)


def test_the_response_notes_of_small_arms_are_hidden_too(sample):
    prepared, full = sample
    d = apply_filter(full, prepared, CohortFilter(antibodies=("mi2",))).derivation
    spec = cohort_overview(d, prepared).tables()["attrition"]
    out = suppress(spec, 11)
    for step, note in zip(out["step"].str.strip(), out["note"]):
        if step in ("MMF", "IVIG", "JAKi"):
            assert note.startswith("<11") or note.startswith("0 "), (step, note)
