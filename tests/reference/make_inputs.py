"""Write the small reference inputs that reference.R reads (run once; the CSVs are committed).

    .venv/bin/python tests/reference/make_inputs.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from analytics import DeriveOptions, analyze, load  # noqa: E402
from analytics.stats.competing import event_codes  # noqa: E402
from analytics.lines.analysis_table import analysis_table  # noqa: E402
from analytics.sample import write_sample  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    paths = write_sample(tmp, n_patients=150, seed=11)
    prepared, _ = load(paths["visits"], paths["therapies"])
    analysis = analyze(prepared, DeriveOptions())
table = analysis_table(analysis.derivation, prepared)
table["code"] = event_codes(table)
cols = ["patient_id", "line_id", "arm", "time", "event", "code", "baseline_cdasi", "line_number", "mda5", "ild"]
table[cols].to_csv(HERE / "survival_input.csv", index=False, float_format="%.10g")
tr = analysis.derivation.trajectories
tr = tr[(tr["arm"] != "") & (tr["weeks"] <= 24)]
tr[["line_id", "arm", "weeks", "cdasi_activity"]].to_csv(HERE / "trajectories_input.csv", index=False,
                                                          float_format="%.10g")
print(len(table), "lines;", len(tr), "trajectory rows")
