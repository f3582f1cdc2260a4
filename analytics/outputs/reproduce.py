"""Reproduce snippets rendered from the call that ran (as teal does): the header rebuilds the
inputs exactly as the dashboard or the pack had them, and the last lines are the recorded
:class:`~analytics.protocol.Call` of the result, so the snippet is the code that ran.

>>> from analytics.protocol import Call
>>> print(snippet(Call("analytics.stats.cox", "fit_cox", (("table", "table"),), {"alpha": 0.1}), "visits.csv"))
... # doctest: +ELLIPSIS
from analytics import load, analyze, DeriveOptions, ResponseRule
...
result = fit_cox(table=table, alpha=0.1)
"""

from __future__ import annotations

from ..protocol import Call

__all__ = ["snippet", "command_line"]


def _imports_for(values) -> list[str]:
    """``from module import Class`` for the option objects among the call's literal arguments,
    and the option objects inside them (a ModelOptions holds a MixedSpec)."""
    import dataclasses

    out: list[str] = []

    def visit(v) -> None:
        if isinstance(v, (list, tuple)):
            for item in v:
                visit(item)
        elif dataclasses.is_dataclass(v) and type(v).__module__.startswith("analytics."):
            line = f"from {type(v).__module__} import {type(v).__name__}"
            if line not in out:
                out.append(line)
            for f in dataclasses.fields(v):
                visit(getattr(v, f.name))

    for value in values:
        visit(value)
    return out


def snippet(call: Call | str | None, visits: str, therapies: str | None = None, mapping: str | None = None,
            derive_options=None, cohort=None, target: str = "result") -> str:
    """The Python that recomputes a result: load, derive (``full``), filter (``derivation``),
    build the analysis table (``table``), then the recorded call (or ``call`` itself when it
    is code, for figures drawn straight from the derivation). Empty when there is no call."""
    from ..lines.cohort import CohortFilter
    from ..lines.options import DeriveOptions

    if not call:
        return ""
    body = call.code(target).rstrip() if isinstance(call, Call) else call.rstrip()
    kwargs = call.kwargs.values() if isinstance(call, Call) else ()
    derive_options = derive_options or DeriveOptions()
    cohort = cohort or CohortFilter()
    args = [repr(visits)] + ([f"therapies={therapies!r}"] if therapies else []) + (
        [f"mapping={mapping!r}"] if mapping else [])
    lines = ["from analytics import load, analyze, DeriveOptions, ResponseRule",
             "from analytics.lines.analysis_table import analysis_table",
             "from analytics.lines.cohort import CohortFilter, apply_filter",
             *_imports_for(kwargs),
             "",
             f"prepared, _ = load({', '.join(args)})",
             f"full = analyze(prepared, {derive_options!r}).derivation",
             f"derivation = apply_filter(full, prepared, {cohort!r}).derivation",
             "table = analysis_table(derivation, prepared)",
             body]
    return "\n".join(lines) + "\n"


def command_line(command: str, visits: str, therapies: str | None, derive_options, alpha: float = 0.05,
                 period: str = "year", extra: str = "") -> str:
    """The same analysis from the command line, with flags (cohort filters and model settings
    need ``--spec``: see :mod:`analytics.spec`)."""
    parts = ["cdasi-outcomes", command, visits]
    if therapies:
        parts += ["--therapies", therapies]
    o = derive_options
    parts += ["--response", str(o.response)] + (["--confirm"] if o.confirm else [])
    if tuple(o.arms) != ("MMF", "IVIG", "JAKi"):
        parts += ["--arms", ",".join(o.arms)]
    if alpha != 0.05:
        parts += ["--alpha", f"{alpha:g}"]
    if period != "year":
        parts += ["--period", period]
    return " ".join(parts) + (f" {extra}" if extra else "")
