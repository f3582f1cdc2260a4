"""The analysis spec (contract.md section 4): one object that says what an analysis is.

An analysis is the dataset plus one :class:`AnalysisSpec`: the compared arms and baseline
window, the response rule, the cohort filters, the model options (adjustment set, alpha, the
mixed-model specification, the quality period) and the pack's choices. It is a TOML file whose
tables and keys are all optional; what is left out takes the default, and an unknown table, key
or value is an :class:`~analytics.errors.OptionError` that names it (exit 2 on the CLI).

>>> spec = AnalysisSpec.from_toml('[response]\\nrule = "percent:40"\\nconfirm = true\\n')
>>> spec.derive.response, spec.derive.confirm
(ResponseRule(kind='percent', value=40.0), True)
>>> AnalysisSpec.from_toml(spec.to_toml()) == spec
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import tomlfile
from .errors import OptionError
from .ingest.schema import ANTIBODIES
from .lines.cohort import SEVERITY, CohortFilter
from .lines.options import MIXED_LEVELS, DeriveOptions, MixedSpec, ResponseRule, parse_arms
from .lines.scheme import Scheme
from .models import ModelOptions

__all__ = ["AnalysisSpec", "PackChoices", "SPEC_KEYS"]


@dataclass(frozen=True)
class PackChoices:
    """The spec's ``[pack]``: small-cell suppression and which figures and tables (None = all)."""

    min_cell: int | None = None
    figures: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None

    def __post_init__(self):
        from .registry import figure_names, table_names

        if self.min_cell is not None and not (2 <= int(self.min_cell) <= 1000):
            raise OptionError("min_cell must be between 2 and 1000 (5 or 11 are usual for sharing)")
        for kind, chosen, known in (("figures", self.figures, figure_names()), ("tables", self.tables, table_names())):
            if chosen is not None:
                unknown = sorted(set(chosen) - set(known))
                if unknown:
                    raise OptionError(f"{kind}: unknown {unknown}; choose from {', '.join(known)}")
                object.__setattr__(self, kind, tuple(chosen))


# ------------------------------------------------------------------ the keys, their types and checks
def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _pair(kind) -> Callable[[Any], bool]:
    return lambda v: (isinstance(v, list) and len(v) == 2 and all(isinstance(x, kind) and not isinstance(x, bool)
                                                                  for x in v))


_NUMBER = (int, float)
SPEC_KEYS: dict[str, dict[str, tuple[str, Callable[[Any], bool]]]] = {
    "data": {"sha256": ("a hex string", lambda v: isinstance(v, str))},
    "lines": {"arms": ("a list of agent codes", _strings),
              "baseline_window_days": ("two whole numbers of days, e.g. [-60, 7]", _pair(int))},
    "response": {"rule": ('"points:N", "percent:P", "atmost:S" or "clear"', lambda v: isinstance(v, str)),
                 "confirm": ("true or false", lambda v: isinstance(v, bool))},
    "cohort": {"arms": ("a list of arms", _strings),
               "line_numbers": ("two line numbers, e.g. [2, 9]", _pair(int)),
               "antibodies": ("a list of antibody codes", _strings),
               "ild": ('"any", "yes" or "no"', lambda v: v in ("any", "yes", "no")),
               "malignancy": ('"any", "yes" or "no"', lambda v: v in ("any", "yes", "no")),
               "sex": ("a list such as [\"female\"]", _strings),
               "age_at_onset": ("two ages, e.g. [18, 90]", _pair(_NUMBER)),
               "severity": (" or ".join(f'"{s}"' for s in SEVERITY), lambda v: v in SEVERITY),
               "start_years": ("two calendar years, e.g. [2018, 2025]", _pair(int))},
    "models": {"adjust_for": ("a list of covariates", _strings),
               "alpha": ("a number between 0 and 0.5", lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool))},
    "mixed": {"horizon_weeks": ("a number of weeks", lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool)),
              "random": ('"slope" or "intercept"', lambda v: v in ("slope", "intercept")),
              "levels": (" or ".join(f'"{x}"' for x in MIXED_LEVELS), lambda v: v in MIXED_LEVELS),
              "covariates": ("a list of covariates", _strings)},
    "quality": {"period": ('"year" or "quarter"', lambda v: v in ("year", "quarter")),
                "targets": ("a table of indicator keys and numbers, e.g. {cdasi_documented = 90}",
                            lambda v: isinstance(v, dict)),
                "better": ('a table of indicator keys and "higher" or "lower"', lambda v: isinstance(v, dict))},
    "scheme": {"name": ("text", lambda v: isinstance(v, str)),
               "assess_weeks": ("a number of weeks", lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool)),
               "assess_window_weeks": ("a number of weeks",
                                       lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool)),
               "escalate_weeks": ("a number of weeks", lambda v: isinstance(v, _NUMBER) and not isinstance(v, bool)),
               "step": ("a list of [[scheme.step]] tables, each with name and agents",
                        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))},
    "pack": {"min_cell": ("a whole number from 2 to 1000", lambda v: isinstance(v, int) and not isinstance(v, bool)),
             "figures": ("a list of figure names", _strings),
             "tables": ("a list of table names", _strings)},
}


def _check_keys(doc: dict) -> None:
    for table, body in doc.items():
        if table not in SPEC_KEYS:
            raise OptionError(f"spec: unknown table [{table}]; known tables: {', '.join(SPEC_KEYS)}")
        if not isinstance(body, dict):
            raise OptionError(f"spec: [{table}] must be a table of keys")
        for key, value in body.items():
            if key not in SPEC_KEYS[table]:
                raise OptionError(f"spec: [{table}] {key}: unknown key; known keys: {', '.join(SPEC_KEYS[table])}")
            what, ok = SPEC_KEYS[table][key]
            if not ok(value):
                raise OptionError(f"spec: [{table}] {key} = {value!r}: must be {what}")


def _built(where: str, make: Callable[[], Any]):
    """Build an option object; its own error gains the spec's table and key."""
    try:
        return make()
    except OptionError as exc:
        raise OptionError(f"spec: [{where}] {exc}") from None


@dataclass(frozen=True)
class AnalysisSpec:
    """The whole analysis: every surface (pages, downloads, the pack, ``results.json``, the
    CLI) is computed from it. ``data_sha256``: the visits file it was made for (a different
    file is a warning, not an error)."""

    derive: DeriveOptions = field(default_factory=DeriveOptions)
    cohort: CohortFilter = field(default_factory=CohortFilter)
    models: ModelOptions = field(default_factory=ModelOptions)
    pack: PackChoices = field(default_factory=PackChoices)
    data_sha256: str | None = None

    def __post_init__(self):
        extra = sorted(set(self.cohort.arms) - set(self.derive.arms))
        if extra:
            raise OptionError(f"spec: [cohort] arms {extra} are not among [lines] arms {list(self.derive.arms)}")

    # -------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, doc: dict) -> "AnalysisSpec":
        _check_keys(doc)
        g = {t: doc.get(t, {}) for t in SPEC_KEYS}
        lines, response, cohort, models, mixed = g["lines"], g["response"], g["cohort"], g["models"], g["mixed"]
        d0, m0 = DeriveOptions(), ModelOptions()
        rule = _built("response", lambda: ResponseRule.parse(response.get("rule", str(d0.response))))
        derive = _built("lines", lambda: DeriveOptions(
            rule, response.get("confirm", d0.confirm),
            parse_arms(",".join(lines.get("arms", d0.arms))),
            tuple(lines.get("baseline_window_days", d0.baseline_window_days))))
        unknown = sorted(set(cohort.get("antibodies", ())) - set(ANTIBODIES))
        if unknown:
            raise OptionError(f"spec: [cohort] antibodies: unknown {unknown}; use {', '.join(ANTIBODIES)}")
        arms = _built("cohort", lambda: parse_arms(",".join(cohort["arms"]))) if cohort.get("arms") else ()
        filt = _built("cohort", lambda: CohortFilter(
            arms=arms, line_numbers=_tuple(cohort.get("line_numbers")), antibodies=tuple(cohort.get("antibodies", ())),
            ild=cohort.get("ild", "any"), malignancy=cohort.get("malignancy", "any"), sex=tuple(cohort.get("sex", ())),
            age=_tuple(cohort.get("age_at_onset")), severity=cohort.get("severity", "any"),
            period=_tuple(cohort.get("start_years"))))
        mixed_spec = _built("mixed", lambda: MixedSpec(float(mixed.get("horizon_weeks", MixedSpec().horizon_weeks)),
                                                       tuple(mixed.get("covariates", ())),
                                                       mixed.get("random", MixedSpec().random),
                                                       levels=mixed.get("levels", MixedSpec().levels)))
        _built("quality", lambda: ModelOptions(targets=g["quality"].get("targets", {}),
                                               better=g["quality"].get("better", {})))
        scheme = Scheme.from_dict(g["scheme"], "spec: [scheme]") if g["scheme"] else Scheme.default()
        model_options = _built("models", lambda: ModelOptions(
            adjust_for=tuple(models.get("adjust_for", m0.adjust_for)), mixed=mixed_spec,
            alpha=float(models.get("alpha", m0.alpha)), period=g["quality"].get("period", m0.period),
            targets=g["quality"].get("targets", {}), better=g["quality"].get("better", {}), scheme=scheme))
        _check_covariates(model_options)
        pack = _built("pack", lambda: PackChoices(g["pack"].get("min_cell"), _tuple(g["pack"].get("figures")),
                                                  _tuple(g["pack"].get("tables"))))
        return cls(derive, filt, model_options, pack, g["data"].get("sha256"))

    @classmethod
    def from_toml(cls, text: str, source: str = "spec") -> "AnalysisSpec":
        return cls.from_dict(tomlfile.parse(text, source))

    @classmethod
    def load(cls, path: str | Path) -> "AnalysisSpec":
        return cls.from_toml(tomlfile.read(path, "spec"), str(path))

    # -------------------------------------------------------------- writing
    def to_dict(self) -> dict:
        """The full resolved spec (every key, defaults included), as written to results.json
        and manifest.json under ``spec``; keys without a value (no restriction) are left out."""
        d, c, m = self.derive, self.cohort, self.models
        doc = {
            "data": {"sha256": self.data_sha256},
            "lines": {"arms": list(d.arms), "baseline_window_days": list(d.baseline_window_days)},
            "response": {"rule": str(d.response), "confirm": d.confirm},
            "cohort": {"arms": list(c.arms), "line_numbers": _list(c.line_numbers), "antibodies": list(c.antibodies),
                       "ild": c.ild, "malignancy": c.malignancy, "sex": list(c.sex), "age_at_onset": _list(c.age),
                       "severity": c.severity, "start_years": _list(c.period)},
            "models": {"adjust_for": list(m.adjust_for), "alpha": m.alpha},
            "mixed": {"horizon_weeks": m.mixed.horizon_weeks, "random": m.mixed.random,
                      "levels": m.mixed.levels, "covariates": list(m.mixed.covariates)},
            "quality": {"period": m.period, "targets": dict(m.targets) or None, "better": dict(m.better) or None},
            "scheme": m.scheme.to_dict(),
            "pack": {"min_cell": self.pack.min_cell, "figures": _list(self.pack.figures),
                     "tables": _list(self.pack.tables)},
        }
        return {t: {k: v for k, v in body.items() if v is not None} for t, body in doc.items()}

    def to_toml(self) -> str:
        import tomli_w

        doc = {t: body for t, body in self.to_dict().items() if body}
        return "# cdasi-outcomes analysis spec (contract section 4)\n" + tomli_w.dumps(doc)

    def to_query(self) -> dict[str, str]:
        """The spec as URL query parameters (``response.rule=percent:40``, lists comma-separated):
        only what differs from the defaults, without ``[data]`` (the link names no dataset)."""
        default = AnalysisSpec().to_dict()
        out = {}
        for table, body in self.to_dict().items():
            if table == "data":
                continue
            for key, value in body.items():
                if default.get(table, {}).get(key) == value:
                    continue
                if table == "scheme" and key == "step":  # a list of tables: JSON
                    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
                elif isinstance(value, dict):  # quality.targets=cdasi_documented:90,ild_screening:80
                    text = ",".join(f"{k}:{v:g}" if isinstance(v, float) else f"{k}:{v}" for k, v in value.items())
                elif isinstance(value, list):
                    text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
                elif isinstance(value, bool):
                    text = "true" if value else "false"
                else:
                    text = f"{value:g}" if isinstance(value, float) else str(value)
                out[f"{table}.{key}"] = text
        return out

    @classmethod
    def from_query(cls, params: dict[str, str]) -> "AnalysisSpec":
        """The spec of a link's query parameters (:meth:`to_query`); other parameters are ignored.
        A bad key or value is an OptionError that names it, as in a spec file."""
        doc: dict = {}
        for name, text in params.items():
            table, _, key = name.partition(".")
            if table not in SPEC_KEYS or table == "data":
                continue
            if key not in SPEC_KEYS[table]:
                raise OptionError(f"link: {name}: unknown key; known keys of [{table}]: {', '.join(SPEC_KEYS[table])}")
            doc.setdefault(table, {})[key] = _from_text(table, key, str(text))
        return cls.from_dict(doc)

    def data_warning(self, sha256: str) -> str | None:
        """A warning when the spec was saved for another visits file ([data] sha256)."""
        if self.data_sha256 and self.data_sha256 != sha256:
            return (f"the spec was saved for a visits file with sha256 {self.data_sha256[:16]}..., but this export's is "
                    f"{sha256[:16]}...: the same analysis, on other data")
        return None

    def describe(self) -> list[str]:
        """The analysis in words, one item per part."""
        d, m = self.derive, self.models
        out = [f"response: {d.response.describe()}" + (", confirmed at the next visit" if d.confirm else ""),
               f"arms: {', '.join(d.arms)}; baseline window {d.baseline_window_days[0]} to "
               f"+{d.baseline_window_days[1]} days",
               "cohort: " + ("; ".join(self.cohort.describe()) or "all lines"),
               f"{100 * (1 - m.alpha):.10g}% intervals; Cox and weights adjusted for {', '.join(m.adjust_for) or 'nothing'}",
               f"mixed model: {m.mixed.horizon_weeks:g} weeks, random {m.mixed.random}, "
               + ("lines nested in patients" if m.mixed.levels == "patient/line" else "by line only")
               + (f", covariates {', '.join(m.mixed.covariates)}" if m.mixed.covariates else ""),
               f"quality indicators by {m.period}"
               + (f"; targets {', '.join(f'{k} {v:g}' for k, v in m.targets)}" if m.targets else "")
               + (f"; better {', '.join(f'{k} {v}' for k, v in m.better)}" if m.better else ""),
               f"scheme: {m.scheme.describe()}"]
        if self.pack.min_cell:
            out.append(f"pack: counts below {self.pack.min_cell} suppressed")
        return out

    def stamp(self, scope: str = "cohort", data: str | None = None, title: str = "", suppressed: int | None = None):
        """What an export made under this spec says of itself: a
        :class:`~analytics.display.provenance.Stamp` (caption lines and file metadata).

        ``scope``: "cohort" (the filtered lines: rule, arms, filters, intervals), "export" (the
        rule applied to the whole export, filters not applied: attrition, quality indicators,
        a patient's timeline) or "data" (the file itself: the validation report). ``data``: the
        input's name and hash as text; ``suppressed``: the small-cell threshold applied, if any."""
        from . import __version__
        from .display.provenance import Stamp

        if scope not in ("cohort", "export", "data"):
            raise ValueError(f"scope must be 'cohort', 'export' or 'data', not {scope!r}")
        d = self.derive
        lines = []
        if scope != "data":
            lines.append(f"Response: {d.response.describe()}" + (", confirmed at the next visit" if d.confirm else "")
                         + f" (rule {d.response})")
            lines.append(f"Arms: {', '.join(d.arms)}")
            lines.append("Cohort: " + ("; ".join(self.cohort.describe()) or "all included lines" if scope == "cohort"
                                       else "the whole export (cohort filters not applied)"))
        if scope == "cohort":
            lines[-1] += f" · {100 * (1 - self.models.alpha):.10g}% intervals"
        if suppressed:
            lines.append(f"Counts below {suppressed} suppressed")
        if data:
            lines.append(f"Data: {data}")
        return Stamp(tuple(lines), title, self.to_toml(), f"cdasi-outcomes {__version__}")


def _check_covariates(options: ModelOptions) -> None:
    from .lines.analysis_table import COVARIATE_LABELS

    for where, names in (("models] adjust_for", options.adjust_for), ("mixed] covariates", options.mixed.covariates)):
        unknown = sorted(set(names) - set(COVARIATE_LABELS))
        if unknown:
            raise OptionError(f"spec: [{where}: unknown {unknown}; choose from {', '.join(COVARIATE_LABELS)}")


def _tuple(v):
    return None if v is None else tuple(v)


def _list(v):
    return None if v is None else list(v)


_LIST_KEYS = {(t, k) for t, body in SPEC_KEYS.items() for k, (what, _) in body.items()
              if what.startswith(("a list", "two "))}


def _scalar(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def _from_text(table: str, key: str, text: str):
    """A query parameter's text as the value the spec's key takes."""
    if (table, key) == ("scheme", "step"):
        try:
            return json.loads(text)
        except ValueError:
            raise OptionError("link: scheme.step must be a JSON list of {name, agents} tables") from None
    if (table, key) in _LIST_KEYS:
        return [_scalar(v.strip()) for v in text.split(",") if v.strip()]
    if (table, key) in (("quality", "targets"), ("quality", "better")):
        pairs = [item.partition(":") for item in text.split(",") if item.strip()]
        bad = [k for k, sep, _ in pairs if not sep]
        if bad:
            raise OptionError(f"link: quality.{key}: {bad[0]!r} must be indicator:value")
        return {k.strip(): (_scalar(v.strip()) if key == "targets" else v.strip()) for k, _, v in pairs}
    if table in ("models", "mixed", "pack", "scheme") and key in ("alpha", "horizon_weeks", "min_cell", "assess_weeks",
                                                                  "assess_window_weeks", "escalate_weeks"):
        return _scalar(text)
    if key == "confirm":
        return _scalar(text)
    return text
