"""From visits to therapy lines: derivation options, the derivation rules, cohort filters and the analysis table."""
