"""The validation report: every problem found in the data, in one object.

A finding names the rule, its severity, the column, the spreadsheet rows (header = row 1),
a few example patient ids, what is wrong and how to fix it. The CLI prints it, the
dashboard shows it as a table, and ``to_dict()`` is JSON-safe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import pandas as pd

__all__ = ["Finding", "ValidationReport", "SEVERITIES"]

SEVERITIES = ("error", "warning", "info")
_MAX_ROWS_SHOWN = 10
_MAX_IDS = 5


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    fix: str = ""
    column: str = ""
    file: str = "visits"
    rows: tuple[int, ...] = ()
    patient_ids: tuple[str, ...] = ()
    count: int = 0

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
        ids = tuple(dict.fromkeys(str(p) for p in self.patient_ids))[:_MAX_IDS]
        object.__setattr__(self, "patient_ids", ids)
        if not self.count:
            object.__setattr__(self, "count", len(self.rows))

    def rows_text(self) -> str:
        if not self.rows:
            return ""
        shown = ", ".join(str(r) for r in self.rows[:_MAX_ROWS_SHOWN])
        more = len(self.rows) - _MAX_ROWS_SHOWN
        return shown + (f" and {more} more" if more > 0 else "")


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)

    def add(self, rule: str, severity: str, message: str, fix: str = "", column: str = "",
            file: str = "visits", rows: Iterable[int] = (), patient_ids: Iterable[str] = (),
            count: int = 0) -> Finding:
        f = Finding(rule, severity, message, fix, column, file, tuple(rows), tuple(patient_ids), count)
        self.findings.append(f)
        return f

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def to_frame(self) -> pd.DataFrame:
        """One row per finding; what is wrong and how to fix it come first, so that a narrow
        table or a spreadsheet shows them without scrolling."""
        cols = ["message", "fix", "severity", "rule", "file", "column", "count", "rows", "patient_ids"]
        return pd.DataFrame(
            [{"severity": f.severity, "rule": f.rule, "file": f.file, "column": f.column, "count": f.count,
              "rows": f.rows_text(), "patient_ids": ", ".join(f.patient_ids), "message": f.message,
              "fix": f.fix} for f in self._sorted()], columns=cols)

    def to_dict(self) -> dict:
        return {"valid": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [asdict(f) | {"rows": list(f.rows), "patient_ids": list(f.patient_ids)}
                             for f in self._sorted()]}

    def _sorted(self) -> list[Finding]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted(self.findings, key=lambda f: order[f.severity])

    def to_text(self) -> str:
        if not self.findings:
            return "No problems found."
        lines = [f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)."]
        for f in self._sorted():
            head = f"{f.severity.upper():7s} [{f.rule}]"
            where = f" {f.file}" + (f", column {f.column!r}" if f.column else "")
            lines.append(f"{head}{where}: {f.message}")
            if f.rows:
                lines.append(f"        rows ({f.count}): {f.rows_text()}")
            elif f.count:
                lines.append(f"        count: {f.count}")
            if f.patient_ids:
                lines.append(f"        e.g. patient ids: {', '.join(f.patient_ids)}")
            if f.fix:
                lines.append(f"        fix: {f.fix}")
        return "\n".join(lines)
