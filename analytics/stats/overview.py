"""The cohort overview as a result like any model's: attrition, the validation report, the
line and trajectory tables, and the trajectory, sequence and swimmer figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lines.derive import Derivation
from ..protocol import Call, FigureSpec, TableSpec, recorded
from ..ingest.validate import Prepared

__all__ = ["CohortOverview", "cohort_overview"]


def _attrition_groups(attrition, arms) -> tuple:
    """The rows of the attrition table that add up: (total row, part rows)."""
    step = {str(s).strip(): i for i, s in enumerate(attrition["step"])}
    arms_row = next((i for s, i in step.items() if s.startswith("lines in the arms")), None)
    return ((step.get("rows read"), tuple(step[s] for s in ("rows with errors (not used)", "repeated rows merged",
                                                             "visits") if s in step)),
            (arms_row, tuple(i for s, i in step.items() if s.startswith("excluded:"))
             + ((step["lines included in the arms"],) if "lines included in the arms" in step else ())),
            (step.get("lines included in the arms"), tuple(step[a] for a in arms if a in step)))


@dataclass(frozen=True)
class CohortOverview:
    derivation: Derivation = field(repr=False)
    prepared: Prepared = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    @property
    def arms(self) -> list[str]:
        return list(self.derivation.options.arms)

    @property
    def summary(self):
        return self.derivation.attrition

    def tables(self) -> dict[str, TableSpec]:
        d = self.derivation
        att = d.attrition
        # "186 responses" in the notes of the arm rows is a count too (text_counts)
        return {"attrition": TableSpec(att, "From rows read to included lines", counts=("n",), text_counts=("note",),
                                       sum_groups=_attrition_groups(att, self.arms)),
                "validation_report": TableSpec(self.prepared.report.to_frame(), "Validation report",
                                               counts=("count",), private_columns=("patient_ids", "rows")),
                "lines": TableSpec(d.lines, "Therapy lines", patient_level=True),
                "trajectories": TableSpec(d.trajectories, "Trajectory rows", patient_level=True)}

    def figures(self) -> dict[str, FigureSpec]:
        from ..display.plots import sankey_figure, spaghetti_figure, swimmer_figure

        d, arms = self.derivation, self.arms
        traj = d.trajectories[d.trajectories["arm"] != ""]
        return {"trajectories": FigureSpec(
                    lambda mc, hidden: spaghetti_figure(traj[~traj["arm"].isin(hidden)], arms, "change",
                                                        min_cell=mc, webgl=False, alpha=self.alpha),
                    "Change in CDASI activity from baseline"),
                "sequences": FigureSpec(lambda mc, hidden: sankey_figure(d, 4, min_cell=mc), "Therapy sequences"),
                "swimmer": FigureSpec(lambda mc, hidden: swimmer_figure(d, 40), "Therapy lines per patient",
                                      patient_level=True)}

    def to_dict(self) -> dict:
        return {"lines": self.derivation.to_dict(), "attrition": self.derivation.attrition.to_dict(orient="records")}


@recorded(derivation="derivation", prepared="prepared")
def cohort_overview(derivation: Derivation, prepared: Prepared, alpha: float = 0.05) -> CohortOverview:
    """The overview of the (filtered) cohort."""
    return CohortOverview(derivation, prepared, [], alpha)
