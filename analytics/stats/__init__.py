"""The analyses: one module per model, each a result object with its tables and figures."""
