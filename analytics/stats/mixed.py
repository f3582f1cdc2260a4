"""Linear mixed-effects model of CDASI activity over time by arm.

Default model (``levels = "patient/line"``), fitted by REML on the first ``horizon_weeks`` (24)
of each line, where most of the change happens (trials assess at 12-16 weeks):

    cdasi_activity ~ weeks * arm + (1 + weeks | patient_id) + (1 + weeks | patient_id:line_id)

Lines are nested in patients: a patient's lines share that patient's random intercept and slope
(the same skin, the same antibodies, the same tendency to flare), and each line has its own on
top. ``weeks:arm[T.X]`` is the difference in slope between arm X and the reference arm.
``levels = "line"`` fits random effects by line only (every line independent), the model before
issue 16; ``random = "intercept"`` keeps random intercepts only, at every level.

Engine: the fast exact path (:mod:`analytics.stats.fastlmm`), which minimises lme4's profiled
deviance. Inference: t-based, with Satterthwaite degrees of freedom computed as lmerTest does,
for every fixed effect, every per-arm slope and every slope difference.

Fallbacks, stated in the result: a singular fit (a variance at zero or a correlation at +-1, lme4's
``isSingular``) drops the patient-level random slope first, then the line-level one. When the fast
path cannot fit the line-only model, statsmodels MixedLM (L-BFGS, then Powell) is tried, with Wald
z intervals; a line-only model that does not converge, or is singular, is refitted with a random
intercept only.
"""

from __future__ import annotations

import warnings
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from patsy import build_design_matrices, dmatrix
from plotly.subplots import make_subplots
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from ..lines.options import MixedSpec
from ..protocol import Call, FigureSpec, TableSpec, ci_label, recorded, z_value
from ..lines.analysis_table import usable_covariates
from ..display.style import CDASI_AXIS, WEEKS_AXIS, arm_color, base_layout, count_text, figure_width, legend_below

__all__ = ["MixedSpec", "MixedResult", "fit_mixed"]

_METHODS = (["lbfgs"], ["powell", "lbfgs"])
FAST_ENGINE = "fast exact profiled REML (the deviance lme4 minimises; analytics.stats.fastlmm)"
SATTERTHWAITE = "Satterthwaite (as lmerTest)"
LEVEL_NAMES = {"patient": "Patient", "line": "Line within patient", "residual": "Visit to visit (residual)"}
SHARE_WEEKS = (0, 12)  # the weeks at which the variance is split into its levels


@dataclass(frozen=True)
class MixedResult:
    spec: MixedSpec
    formula: str
    re_formula: str  # the line level's random effects, "~weeks" or "1"
    arms: list[str]
    reference_arm: str | None
    fixed_effects: pd.DataFrame
    slopes: pd.DataFrame
    variance_components: dict
    predictions: pd.DataFrame
    diagnostics: pd.DataFrame
    observed_means: pd.DataFrame
    n_obs: int
    n_groups: int  # lines
    lines_by_arm: dict
    converged: bool
    fallback: str | None
    warnings: list[str] = field(default_factory=list)
    model: object = field(default=None, repr=False)
    engine: str = ""
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)
    random_effects: dict = field(default_factory=dict)  # level ("patient", "line") -> "~weeks" or "1"
    n_patients: int = 0
    df_method: str = ""
    variance: pd.DataFrame = field(default_factory=pd.DataFrame)  # per level: SDs, correlation, shares

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels with random effects, outermost first: ("patient", "line") or ("line",)."""
        return tuple(lev for lev in ("patient", "line") if lev in self.random_effects)

    @property
    def nested(self) -> bool:
        return "patient" in self.random_effects

    @property
    def model_formula(self) -> str:
        """The fitted model in lme4's notation."""
        terms = {"patient": "patient_id", "line": "patient_id:line_id" if self.nested else "line_id"}
        re = "".join(f" + ({'1 + weeks' if f == '~weeks' else '1'} | {terms[lev]})"
                     for lev, f in self.random_effects.items())
        return self.formula + re

    def variance_text(self) -> str:
        """The split of the variance into its levels in words, for a clinician."""
        if not len(self.variance):
            return ""
        v = self.variance.set_index("key")
        parts = {"patient": "between patients", "line": "between lines of the same patient" if self.nested
                 else "between lines", "residual": "from visit to visit"}
        items = [f"{v.loc[k, 'share_week_0']:.0f}% {parts[k]}" for k in v.index]
        items[0] = items[0].replace("% ", "% is ", 1)
        split = ", ".join(items[:-1]) + " and " + items[-1]
        return ("Of the variation in CDASI activity at the start of a line that arm and time do not explain, "
                f"{split}.")

    def random_text(self) -> str:
        """The random effects in words, e.g. "random intercept and slope by patient and by line"."""
        parts = [("random intercept and slope" if f == "~weeks" else "random intercept") + " by "
                 + ("line within patient" if lev == "line" and self.nested else lev)
                 for lev, f in self.random_effects.items()]
        return "; ".join(parts) or "none"

    def tables(self) -> dict[str, TableSpec]:
        slopes = self.slopes.reset_index()
        slopes.insert(1, "lines", slopes["arm"].map(self.lines_by_arm).fillna(0).astype(int))
        out = {"fixed_effects": TableSpec(self.fixed_effects.reset_index(names="term"),
                                          "Mixed model: fixed effects"),
               "slopes": TableSpec(slopes, "Mixed model: CDASI activity slope per arm", counts=("lines",),
                                   derived=tuple(c for c in slopes.columns if c not in ("arm", "lines")))}
        if len(self.variance):
            out["variance"] = TableSpec(self.variance.drop(columns="key"), "Mixed model: variance at each level")
        return out

    def figures(self) -> dict[str, FigureSpec]:
        return {"trajectories": FigureSpec(lambda mc, hidden: self.figure(min_cell=mc),
                                           "Mixed model: CDASI activity over time"),
                "diagnostics": FigureSpec(lambda mc, hidden: self.diagnostics_figure(),
                                          "Mixed model diagnostics (conditional residuals of every visit)",
                                          patient_level=True)}

    @property
    def summary(self) -> pd.DataFrame:
        return self.fixed_effects

    def to_dict(self) -> dict:
        fe = {t: {"estimate": float(r["estimate"]), "se": float(r["se"]), "df": _f(r["df"]),
                  "ci": [float(r["lower"]), float(r["upper"])], "p": float(r["p"])}
              for t, r in self.fixed_effects.iterrows()}
        slopes = {a: {"estimate": _f(r["per_week"]), "se": _f(r["se"]), "df": _f(r["df"]),
                      "ci": [_f(r["lower"]), _f(r["upper"])],
                      "per_12_weeks": _f(r["per_12_weeks"]),
                      "per_12_weeks_ci": [_f(r["lower"] * 12), _f(r["upper"] * 12)],
                      "difference_vs_reference": _f(r["diff"]), "difference_df": _f(r["diff_df"]),
                      "difference_ci": [_f(r["diff_lower"]), _f(r["diff_upper"])],
                      "difference_p": _f(r["diff_p"])} for a, r in self.slopes.iterrows()}
        shares = {}
        if len(self.variance):
            v = self.variance.set_index("key")
            shares = {f"week_{w}": {k: _f(v.loc[k, f"share_week_{w}"]) for k in v.index} for w in SHARE_WEEKS}
        return {"formula": self.formula, "model": self.model_formula if self.converged else None,
                "levels": self.spec.levels,
                "groups": "patient_id/line_id" if self.nested else "line_id",
                "group_counts": ({"patient_id": self.n_patients} if self.nested else {}) | {"line_id": self.n_groups},
                "random_effects": dict(self.random_effects), "re_formula": self.re_formula, "reml": self.spec.reml,
                "n_obs": self.n_obs, "n_groups": self.n_groups, "n_patients": self.n_patients,
                "converged": self.converged, "fallback": self.fallback, "horizon_weeks": self.spec.horizon_weeks,
                "reference_arm": self.reference_arm, "engine": self.engine, "df_method": self.df_method,
                "fixed_effects": fe, "slopes_per_week": slopes,
                "variance_components": _vc_dict(self.variance_components), "variance_shares": shares,
                "warnings": list(self.warnings)}

    def figure(self, title: str | None = None, min_cell: int | None = None) -> go.Figure:
        return trajectory_figure(self, title, min_cell)

    def diagnostics_figure(self) -> go.Figure:
        return diagnostics_figure(self)


def _vc_dict(vc: dict) -> dict:
    return {k: (_vc_dict(v) if isinstance(v, dict) else _f(v)) for k, v in vc.items()}


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _prepare(trajectories: pd.DataFrame, arms: list[str], spec: MixedSpec, covariates: pd.DataFrame | None,
             warns: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    d = trajectories[(trajectories["arm"].isin(arms)) & (trajectories["weeks"] <= spec.horizon_weeks)]
    keep = ["patient_id"] if "patient_id" in d.columns else []
    d = d.dropna(subset=["cdasi_activity"])[[*keep, "line_id", "arm", "weeks", "cdasi_activity"]].copy()
    covs = []
    if spec.covariates:
        if covariates is None:
            warns.append("no covariate table given: the model is not adjusted")
        else:
            covs = usable_covariates(covariates, spec.covariates, warns, "the model is not adjusted for it")
            if covs:
                d = d.merge(covariates[["line_id", *covs]], on="line_id", how="left")
                before = d["line_id"].nunique()
                d = d.dropna(subset=covs)
                lost = before - d["line_id"].nunique()
                if lost:
                    warns.append(f"{lost} line(s) with a missing covariate value were left out of the mixed model")
    present = [a for a in arms if (d["arm"] == a).any()]
    for a in arms:
        if a not in present:
            warns.append(f"{a}: no trajectory data in the first {spec.horizon_weeks:g} weeks; no slope")
    d["arm"] = pd.Categorical(d["arm"], categories=present)
    return d, present, covs


def _attempts(spec: MixedSpec, nested: bool) -> list[tuple[dict, str | None]]:
    """The random-effects structures to try, in order, as ({level: q}, the fallback in words)."""
    if nested:
        if spec.random == "intercept":
            return [({"patient": 1, "line": 1}, None)]
        return [({"patient": 2, "line": 2}, None),
                ({"patient": 1, "line": 2}, "the patient-level random slope was dropped (the model with random "
                                            "slopes at both levels was singular)"),
                ({"patient": 1, "line": 1}, "the patient- and line-level random slopes were dropped (the models "
                                            "with random slopes were singular)")]
    if spec.random == "intercept":
        return [({"line": 1}, None)]
    return [({"line": 2}, None), ({"line": 1}, "random intercept only (the random-slope model did not converge or "
                                               "had a singular covariance)")]


@recorded(trajectories="derivation.trajectories", covariates="table")
def fit_mixed(trajectories: pd.DataFrame, arms: list[str] | tuple[str, ...], spec: MixedSpec | None = None,
              covariates: pd.DataFrame | None = None, alpha: float = 0.05) -> MixedResult:
    """Fit the mixed model. ``covariates``: a line-level table (line_id plus columns) such as
    :func:`analytics.lines.analysis_table.analysis_table`, needed only when ``spec.covariates`` is set.
    ``trajectories`` needs patient_id for the nested model (without it, random effects are by line
    only, with a warning)."""
    spec = spec or MixedSpec()
    warns: list[str] = []
    arms = list(arms)
    d, present, covs = _prepare(trajectories, arms, spec, covariates, warns)
    rhs = "weeks * arm" if len(present) >= 2 else "weeks"
    formula = "cdasi_activity ~ " + rhs + "".join(f" + {c}" for c in covs)
    if len(present) < 2:
        warns.append("fewer than two arms with data: the model has no arm terms")
    nested = spec.levels == "patient/line"
    if nested and "patient_id" not in d.columns:
        warns.append("the trajectories have no patient_id column: random effects by line only")
        nested = False
    elif nested and len(d) and d.groupby("patient_id")["line_id"].nunique().max() < 2:
        warns.append("no patient has more than one line in the model: patient and line effects cannot be told "
                     "apart, so the random effects are by line only")
        nested = False
    def empty() -> MixedResult:  # built only when returned: its observed means cost 0.1 s at 100,000 patients
        return _empty(spec, formula, arms, present, d, warns, alpha)

    if d["line_id"].nunique() < 3 or len(d) < 6:
        warns.append("too few lines or visits for a mixed model")
        return empty()
    if d["cdasi_activity"].nunique() < 2:
        warns.append("CDASI activity is constant in these data: nothing to model")
        return empty()

    attempts = _attempts(spec, nested)
    fit, used, fallback = None, None, None
    X = dmatrix(formula.split("~", 1)[1], d, return_type="dataframe")  # once, for every attempt and the result
    if len(X) <= X.shape[1]:
        warns.append(f"too few visits ({len(X)}) for the model's {X.shape[1]} fixed effects: no residual degrees "
                     "of freedom")
        return empty()
    codes = {"line": pd.factorize(d["line_id"])[0], "patient": pd.factorize(d["patient_id"])[0] if nested else None,
             "arm": pd.factorize(d["arm"])[0]}  # fastlmm's cells: weeks * arm (with a covariate that varies
    # within an arm, X is not of that form and fastlmm takes its plain path)
    done: dict = {}
    if len(attempts) == 3:
        # The full nested model starts from the fit with a random patient intercept (its fallback, fitted
        # first): the same optimum, reached in about half the time, and the fallback is then at hand.
        done[1] = _try_fast(d, X, codes, attempts[1][0], spec.reml, warns)
    for k, (qs, why) in enumerate(attempts):
        if k in done:
            got = done[k]
        else:
            start = _warm_start(done[1]) if k == 0 and done.get(1) is not None else None
            got = _try_fast(d, X, codes, qs, spec.reml, warns, start)
        if got is None:
            break
        if got.singular and k < len(attempts) - 1:
            continue
        fit, used, fallback = got.with_satterthwaite(), qs, why
        if got.singular:
            sing = " and ".join(got.singular_levels())
            warns.append(f"singular fit: a variance at the {sing} level is estimated at zero (or a correlation at "
                         "+-1); the estimates stand, but that level adds nothing beyond the others")
        break
    if fit is None:  # the fast path could not fit: statsmodels MixedLM by line, as before issue 16
        for qs, why in _attempts(spec, nested=False):
            got = _try_fit(d, formula, "~weeks" if qs["line"] == 2 else "1", spec.reml, warns)
            if got is not None:
                fit, used = got, qs
                fallback = "; ".join(x for x in (
                    "random effects by line only (the model with lines nested in patients could not be fitted)"
                    if nested else None, why) if x) or None
                break
    if fit is None:
        warns.append("the mixed model could not be fitted with any random-effects structure")
        return empty()
    if fallback:
        warns.append(f"fallback: {fallback}")
    if getattr(fit, "hessian_note", ""):
        warns.append(f"Satterthwaite df: {fit.hessian_note}")
    return _result(fit, spec, formula, X.design_info, used, arms, present, d, fallback, warns, alpha)


def _warm_start(fit) -> np.ndarray:
    """A start for the model with random slopes at both levels, from the fit with a random patient
    intercept: its line level, its patient intercept, and a patient slope the size of the line's
    (not zero: the deviance is flat there, and the search would stay)."""
    line, patient = fit.theta["line"], fit.theta["patient"]
    return np.r_[line, patient[0], 0.0, max(abs(line[-1]), 1e-2)]


def _try_fast(d: pd.DataFrame, X: pd.DataFrame, codes: dict, qs: dict, reml: bool, warns: list[str], start=None):
    """The fast exact path (analytics.stats.fastlmm) for one random-effects structure; None when it
    cannot fit (a rank-deficient design) or does not converge."""
    from .fastlmm import fit_lmm

    try:
        fit = fit_lmm(X.to_numpy(), d["cdasi_activity"].to_numpy(float), codes["line"],
                      codes["patient"] if "patient" in qs else None,
                      d["weeks"].to_numpy(float), q_line=qs["line"], q_patient=qs.get("patient", 0), reml=reml,
                      satterthwaite=False, start=start, cells=codes["arm"])
    except (ValueError, np.linalg.LinAlgError) as exc:
        msg = f"fast path not used ({exc})" + ("; statsmodels MixedLM instead" if "patient" not in qs else "")
        if msg not in warns:
            warns.append(msg)
        return None
    if not (fit.converged and np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.cov_beta))):
        warns.append(f"the fast path did not converge ({fit.message})")
        return None
    fit.names = list(X.columns)
    fit.engine = FAST_ENGINE
    return fit


def _try_fit(d: pd.DataFrame, formula: str, re_formula: str, reml: bool, warns: list[str]):
    local: list[str] = []
    for method in _METHODS:
        local.clear()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                from statsmodels.regression.mixed_linear_model import MixedLM  # the fallback only

                model = MixedLM.from_formula(formula, d, groups="line_id", re_formula=re_formula)
                fit = model.fit(reml=reml, method=method, maxiter=2000)
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
            local.append(f"{type(exc).__name__}: {exc}")
            continue
        local += [f"{w.category.__name__}: {w.message}" for w in caught]
        cov = np.atleast_2d(np.asarray(fit.cov_re))
        singular = re_formula != "1" and (np.linalg.eigvalsh(cov).min() <= 1e-8 * max(cov.max(), 1e-12))
        bad_warning = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if fit.converged and not singular and not bad_warning and np.all(np.isfinite(fit.bse_fe)):
            warns.extend(x for x in local if x not in warns)
            return _StatsmodelsFit(fit)
    tag = "random slope" if re_formula != "1" else "random intercept"
    warns.extend(f"({tag} model) {x}" for x in local if x)
    return None


class _StatsmodelsFit:
    """What :func:`_result` reads, from a statsmodels MixedLMResults (Wald z: no df)."""

    engine = "statsmodels MixedLM (L-BFGS, then Powell)"

    def __init__(self, fit):
        self.model = fit
        self.names = list(fit.fe_params.index)
        self.beta = fit.fe_params.to_numpy()
        self.cov_beta = fit.cov_params().loc[self.names, self.names].to_numpy()
        self.sigma2 = float(fit.scale)
        self.cov_re = {"line": np.atleast_2d(np.asarray(fit.cov_re))}
        self.resid, self.fitted = np.asarray(fit.resid), np.asarray(fit.fittedvalues)

    def df(self, L) -> float:
        return float("inf")


def _empty(spec, formula, arms, present, d, warns, alpha) -> MixedResult:
    cols = ["estimate", "se", "df", "lower", "upper", "p"]
    return MixedResult(spec, formula, "~weeks" if spec.random == "slope" else "1", arms,
                       present[0] if present else None, pd.DataFrame(columns=cols),
                       pd.DataFrame(np.nan, index=pd.Index(arms, name="arm"), columns=_SLOPE_COLUMNS),
                       {}, pd.DataFrame(columns=["arm", "weeks", "mean", "lower", "upper"]),
                       pd.DataFrame(columns=["fitted", "residual", "theoretical", "sample"]),
                       _observed_means(d, spec, alpha), len(d), int(d["line_id"].nunique()) if len(d) else 0,
                       _lines_by_arm(d), False, None, warns, alpha=alpha,
                       n_patients=int(d["patient_id"].nunique()) if "patient_id" in d.columns and len(d) else 0)


_SLOPE_COLUMNS = ["per_week", "se", "df", "lower", "upper", "per_12_weeks", "diff", "diff_df", "diff_lower",
                  "diff_upper", "diff_p"]


def _lines_by_arm(d: pd.DataFrame) -> dict:
    return {str(a): int(n) for a, n in d.groupby("arm", observed=True)["line_id"].nunique().items()}


def _observed_means(d: pd.DataFrame, spec: MixedSpec, alpha: float = 0.05) -> pd.DataFrame:
    if d.empty:
        return pd.DataFrame(columns=["arm", "bin", "weeks", "mean", "lower", "upper", "n"])
    edges = np.arange(0, spec.horizon_weeks + 4, 4.0)
    b = pd.cut(d["weeks"].clip(lower=0), edges, include_lowest=True, right=True)
    g = d.assign(bin=b).groupby(["arm", "bin"], observed=True)["cdasi_activity"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["weeks"] = out["bin"].map(lambda iv: iv.mid).astype(float)
    half = z_value(alpha) * out["std"].fillna(0) / np.sqrt(out["count"])
    out["lower"], out["upper"] = out["mean"] - half, out["mean"] + half
    return out.rename(columns={"count": "n"})[["arm", "bin", "weeks", "mean", "lower", "upper", "n"]]


def _quantile(alpha: float, df: float) -> float:
    """The two-sided 1 - alpha quantile of t with ``df`` degrees of freedom (normal when df is inf)."""
    return z_value(alpha) if not np.isfinite(df) else float(stats.t.ppf(1 - alpha / 2, df))


def _p(t: float, df: float) -> float:
    return float(2 * (stats.norm.sf(abs(t)) if not np.isfinite(df) else stats.t.sf(abs(t), df)))


def _contrast(fit, L: np.ndarray, alpha: float) -> dict:
    est = float(L @ fit.beta)
    se = float(np.sqrt(L @ fit.cov_beta @ L))
    df = fit.df(L)
    half = _quantile(alpha, df) * se
    return {"estimate": est, "se": se, "df": df, "lower": est - half, "upper": est + half, "p": _p(est / se, df)}


def _variance(cov_re: dict, sigma2: float) -> tuple[dict, pd.DataFrame]:
    """Variance components per level, and the table that splits the variance of one visit's CDASI
    activity (around the arm's mean) into its levels at weeks 0 and 12."""
    vc: dict = {}
    rows = []
    for lev in ("patient", "line"):
        if lev not in cov_re:
            continue
        c = np.atleast_2d(cov_re[lev])
        comp = {"intercept_var": float(c[0, 0])}
        if c.shape[0] > 1:
            comp |= {"slope_var": float(c[1, 1]), "intercept_slope_cov": float(c[0, 1])}
        vc[lev] = comp
    vc["residual_var"] = float(sigma2)
    at = {}
    for w in SHARE_WEEKS:
        parts = {lev: comp["intercept_var"] + 2 * w * comp.get("intercept_slope_cov", 0.0)
                 + w * w * comp.get("slope_var", 0.0) for lev, comp in vc.items() if lev != "residual_var"}
        parts["residual"] = float(sigma2)
        total = sum(parts.values())
        at[w] = {k: 100 * v / total for k, v in parts.items()}
    for lev in [*(x for x in ("patient", "line") if x in vc), "residual"]:
        comp = vc.get(lev, {"intercept_var": np.nan}) if lev != "residual" else {}
        slope_sd = np.sqrt(comp["slope_var"]) if "slope_var" in comp else np.nan
        icpt_sd = np.sqrt(comp["intercept_var"]) if comp else np.nan
        corr = (comp["intercept_slope_cov"] / (icpt_sd * slope_sd)
                if "slope_var" in comp and icpt_sd > 0 and slope_sd > 0 else np.nan)
        name = LEVEL_NAMES[lev] if lev != "line" or "patient" in vc else "Line"
        rows.append({"level": name, "key": lev, "intercept_sd": icpt_sd, "slope_sd_per_week": slope_sd,
                     "correlation": corr, "residual_sd": np.sqrt(sigma2) if lev == "residual" else np.nan}
                    | {f"share_week_{w}": at[w][lev] for w in SHARE_WEEKS})
    return vc, pd.DataFrame(rows)


def _result(fit, spec, formula, info, used, arms, present, d, fallback, warns, alpha) -> MixedResult:
    fe_names = list(fit.names)
    est, cov = np.asarray(fit.beta), np.asarray(fit.cov_beta)
    eye = np.eye(len(fe_names))
    fixed = pd.DataFrame([_contrast(fit, eye[i], alpha) for i in range(len(fe_names))], index=fe_names)
    fixed = fixed[["estimate", "se", "df", "lower", "upper", "p"]]
    ref = present[0] if present else None
    rows = []
    for arm in arms:
        if arm not in present:
            rows.append({"arm": arm} | dict.fromkeys(_SLOPE_COLUMNS, np.nan))
            continue
        L = np.zeros(len(fe_names))
        L[fe_names.index("weeks")] = 1
        inter = f"weeks:arm[T.{arm}]"
        if arm != ref and inter in fe_names:
            L[fe_names.index(inter)] = 1
        c = _contrast(fit, L, alpha)
        row = {"arm": arm, "per_week": c["estimate"], "se": c["se"], "df": c["df"], "lower": c["lower"],
               "upper": c["upper"], "per_12_weeks": 12 * c["estimate"]}
        if arm != ref and inter in fe_names:
            r = fixed.loc[inter]
            row |= {"diff": r["estimate"], "diff_df": r["df"], "diff_lower": r["lower"], "diff_upper": r["upper"],
                    "diff_p": r["p"]}
        else:
            row |= {"diff": 0.0 if arm == ref else np.nan, "diff_df": np.nan, "diff_lower": np.nan,
                    "diff_upper": np.nan, "diff_p": np.nan}
        rows.append(row)
    slopes = pd.DataFrame(rows).set_index("arm")[_SLOPE_COLUMNS]
    vc, variance = _variance(fit.cov_re, fit.sigma2)

    # Model-based mean trajectories per arm (covariates at their means), with 1 - alpha CIs (t with
    # the Satterthwaite df of each point's contrast).
    grid = np.linspace(0, spec.horizon_weeks, int(spec.horizon_weeks) + 1)
    new = pd.DataFrame([(a, w) for a in present for w in grid], columns=["arm", "weeks"])
    new["arm"] = pd.Categorical(new["arm"], categories=present)
    for c in fe_names:
        if c in d.columns and c not in ("weeks", "arm"):
            new[c] = d[c].mean()
    if list(info.column_names) != fe_names:  # same patsy formula, so the same columns
        raise RuntimeError(f"design mismatch: {info.column_names} != {fe_names}")
    X = np.asarray(build_design_matrices([info], new)[0])
    mean = X @ est
    mse = np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X))
    q = np.array([_quantile(alpha, fit.df(x)) for x in X])
    preds = new[["arm", "weeks"]].assign(mean=mean, lower=mean - q * mse, upper=mean + q * mse)
    preds["arm"] = preds["arm"].astype(str)

    resid = np.asarray(fit.resid)
    fitted = np.asarray(fit.fitted)
    order = np.argsort(resid)
    theo = stats.norm.ppf((np.arange(1, len(resid) + 1) - 0.5) / len(resid))
    sample = np.empty_like(resid)
    sample[order] = np.sort(resid)
    theoretical = np.empty_like(resid)
    theoretical[order] = theo * np.std(resid, ddof=1)
    diag = pd.DataFrame({"fitted": fitted, "residual": resid, "theoretical": theoretical, "sample": sample})
    random_effects = {lev: "~weeks" if q_ == 2 else "1" for lev, q_ in used.items()}
    df_method = SATTERTHWAITE if fit.engine == FAST_ENGINE else "none: Wald z (statsmodels fallback)"
    return MixedResult(spec, formula, random_effects["line"], arms, ref, fixed, slopes, vc, preds, diag,
                       _observed_means(d, spec, alpha), int(len(resid)), int(d["line_id"].nunique()),
                       _lines_by_arm(d), True, fallback, warns, getattr(fit, "model", fit), engine=fit.engine,
                       alpha=alpha, random_effects=random_effects,
                       n_patients=int(d["patient_id"].nunique()) if "patient_id" in d.columns else 0,
                       df_method=df_method, variance=variance)


def trajectory_figure(result: MixedResult, title: str | None = None, min_cell: int | None = None) -> go.Figure:
    """Model-based mean CDASI activity per arm with CI bands; observed means (4-week bins)
    with CIs as points (all 1 - alpha); n lines per arm in the legend."""
    ci = ci_label(result.alpha)
    fig = go.Figure()
    for arm in result.arms:
        colour = arm_color(arm, result.arms)
        p = result.predictions[result.predictions["arm"] == arm]
        if p.empty:
            continue
        slope = result.slopes.loc[arm, "per_12_weeks"]
        fig.add_trace(go.Scatter(x=np.concatenate([p["weeks"], p["weeks"][::-1]]),
                                 y=np.concatenate([p["upper"], p["lower"][::-1]]), fill="toself", fillcolor=colour,
                                 opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False,
                                 legendgroup=arm))
        fig.add_trace(go.Scatter(x=p["weeks"], y=p["mean"], mode="lines", line=dict(color=colour, width=2.5),
                                 legendgroup=arm, name=f"{arm}: {slope:+.1f} points per 12 weeks "
                                 f"(n = {count_text(result.lines_by_arm.get(arm, 0), min_cell)} lines)",
                                 hovertemplate="%{x:.0f} weeks: %{y:.1f}<extra>" + arm + " (model)</extra>"))
        o = result.observed_means[result.observed_means["arm"] == arm]
        if min_cell:  # a mean over fewer than min_cell visits is not shown in anything shared
            o = o[o["n"] >= min_cell]
        fig.add_trace(go.Scatter(x=o["weeks"], y=o["mean"], mode="markers", legendgroup=arm, showlegend=False,
                                 marker=dict(color=colour, size=8, symbol="circle-open", line=dict(width=2)),
                                 error_y=dict(type="data", symmetric=False, array=o["upper"] - o["mean"],
                                              arrayminus=o["mean"] - o["lower"], color=colour, thickness=1),
                                 customdata=[count_text(n, min_cell) for n in o["n"]],
                                 hovertemplate="%{x:.0f} weeks: observed mean %{y:.1f} (n = %{customdata})"
                                               "<extra>" + arm + "</extra>"))
    fig.update_xaxes(title_text=WEEKS_AXIS, range=[0, result.spec.horizon_weeks])
    fig.update_yaxes(title_text=CDASI_AXIS, rangemode="tozero")
    if result.nested:
        random = "lines nested in patients"
        who = (f"{count_text(result.n_groups, min_cell)} lines of {count_text(result.n_patients, min_cell)} "
               "patients")
    else:
        random = ("random intercept and slope" if result.re_formula == "~weeks" else "random intercept") + " by line"
        who = f"{count_text(result.n_groups, min_cell)} lines"
    sub = (f"Linear mixed model (REML), {random}; {count_text(result.n_obs, min_cell)} visits of {who}<br>"
           f"Lines: model means with {ci}; points: observed means with {ci} in 4-week bins")
    base_layout(fig, f"{title or 'CDASI activity over time by arm'}<br><sup>{sub}</sup>", height=560)
    fig.update_layout(margin=dict(t=110))
    return legend_below(fig, plot_height=340, entry_px=420)


DIAGNOSTIC_POINTS = 2000  # marks per panel of the diagnostics figure, whatever the cohort


def diagnostic_marks(d: pd.DataFrame, max_points: int = DIAGNOSTIC_POINTS, seed: int = 20210301
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the diagnostics figure draws, bounded by ``max_points`` marks per panel:

    - residuals against fitted values: every residual up to ``max_points``, above that a seeded
      random sample of them;
    - the trend of the residuals: their mean in 20 bins of equal count of fitted values, from
      every residual (so a pattern the sample hides still shows);
    - the Q-Q plot: every pair up to ``max_points``, above that the pairs at ``max_points``
      evenly spaced ranks (the first and the last included), which draw the same curve.
    Returns (scatter rows, trend with columns fitted and residual, Q-Q rows)."""
    n = len(d)
    if n <= max_points:
        scatter = d
        qq = d.sort_values("theoretical")
    else:
        rng = np.random.default_rng(seed)
        scatter = d.iloc[np.sort(rng.choice(n, size=max_points, replace=False))]
        qq = d.sort_values("theoretical").iloc[np.unique(np.linspace(0, n - 1, max_points).round().astype(int))]
    trend = pd.DataFrame(columns=["fitted", "residual"])
    if n >= 40:
        bins = pd.qcut(d["fitted"].rank(method="first"), 20, labels=False)
        trend = d.groupby(bins)[["fitted", "residual"]].mean().reset_index(drop=True)
    return scatter, trend, qq


def diagnostics_figure(result: MixedResult) -> go.Figure:
    titles = ("Residuals against fitted values", "Normal Q-Q plot") if figure_width() >= 600 else \
        ("Residuals vs fitted", "Normal Q-Q")  # a journal column: the panels' titles must fit their half
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    d = result.diagnostics
    scatter, trend, qq = diagnostic_marks(d)
    fig.add_trace(go.Scattergl(x=scatter["fitted"], y=scatter["residual"], mode="markers", showlegend=False,
                               name="Residual", marker=dict(size=4, color="#0072B2", opacity=0.4)), row=1, col=1)
    if len(trend):
        fig.add_trace(go.Scatter(x=trend["fitted"], y=trend["residual"], mode="lines", showlegend=False,
                                 name="Mean residual (20 bins of fitted values)",
                                 line=dict(color="#D55E00", width=2)), row=1, col=1)
    fig.add_hline(y=0, line=dict(color="#888", dash="dash"), row=1, col=1)
    fig.add_trace(go.Scattergl(x=qq["theoretical"], y=qq["sample"], mode="markers", showlegend=False,
                               name="Residual quantile", marker=dict(size=4, color="#0072B2", opacity=0.4)),
                  row=1, col=2)
    if len(d):
        lim = [float(d["theoretical"].min()), float(d["theoretical"].max())]
        fig.add_trace(go.Scatter(x=lim, y=lim, mode="lines", line=dict(color="#888", dash="dash"), showlegend=False),
                      row=1, col=2)
    fig.update_xaxes(title_text="Fitted CDASI activity (points)", row=1, col=1)
    fig.update_yaxes(title_text="Residual (points)", row=1, col=1)
    fig.update_xaxes(title_text="Normal quantile x residual SD (points)", row=1, col=2)
    fig.update_yaxes(title_text="Residual (points)", row=1, col=2)
    sub = [f"Points: all {len(d):,} residuals" if len(d) <= DIAGNOSTIC_POINTS else
           f"Points: a random sample of {DIAGNOSTIC_POINTS:,} of {len(d):,} residuals; Q-Q: "
           f"{DIAGNOSTIC_POINTS:,} evenly spaced quantiles"]
    if len(trend):
        sub.append("Orange line: the mean residual in 20 bins of fitted values, from every residual")
    base_layout(fig, "Mixed model diagnostics (conditional residuals)"
                + "".join(f"<br><sup>{line}</sup>" for line in sub), height=500)
    fig.update_layout(margin=dict(t=104 + 30 * len(sub)))  # the title block, then the panels' titles
    return fig
