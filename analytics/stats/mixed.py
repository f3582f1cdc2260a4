"""Linear mixed-effects model of CDASI activity over time by arm (statsmodels MixedLM).

Default model: ``cdasi_activity ~ weeks * arm`` with a random intercept and a random slope for
weeks by ``line_id``, fitted by REML on the first ``horizon_weeks`` (24) of each line, where
most of the change happens (trials assess at 12-16 weeks). ``weeks:arm[T.X]`` is the difference
in slope between arm X and the reference arm.

Optimiser: L-BFGS, then Powell. (statsmodels' default list starts with BFGS, which on these
data stops at a wrong optimum with a huge slope variance; L-BFGS reaches the same optimum as
lme4, see tests/reference.) Fallback, stated in the result: when the random-slope model does
not converge, or its covariance is singular, the model is refitted with a random intercept only.
"""

from __future__ import annotations

import warnings
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import statsmodels.formula.api as smf
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


@dataclass(frozen=True)
class MixedResult:
    spec: MixedSpec
    formula: str
    re_formula: str
    arms: list[str]
    reference_arm: str | None
    fixed_effects: pd.DataFrame
    slopes: pd.DataFrame
    variance_components: dict
    predictions: pd.DataFrame
    diagnostics: pd.DataFrame
    observed_means: pd.DataFrame
    n_obs: int
    n_groups: int
    lines_by_arm: dict
    converged: bool
    fallback: str | None
    warnings: list[str] = field(default_factory=list)
    model: object = field(default=None, repr=False)
    engine: str = ""
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    def tables(self) -> dict[str, TableSpec]:
        slopes = self.slopes.reset_index()
        slopes.insert(1, "lines", slopes["arm"].map(self.lines_by_arm).fillna(0).astype(int))
        return {"fixed_effects": TableSpec(self.fixed_effects.reset_index(names="term"),
                                           "Mixed model: fixed effects"),
                "slopes": TableSpec(slopes, "Mixed model: CDASI activity slope per arm", counts=("lines",),
                                    derived=tuple(c for c in slopes.columns if c not in ("arm", "lines")))}

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
        fe = {t: {"estimate": float(r["estimate"]), "se": float(r["se"]),
                  "ci": [float(r["lower"]), float(r["upper"])], "p": float(r["p"])}
              for t, r in self.fixed_effects.iterrows()}
        slopes = {a: {"estimate": _f(r["per_week"]), "ci": [_f(r["lower"]), _f(r["upper"])],
                      "per_12_weeks": _f(r["per_12_weeks"]),
                      "per_12_weeks_ci": [_f(r["lower"] * 12), _f(r["upper"] * 12)],
                      "difference_vs_reference": _f(r["diff"]), "difference_ci": [_f(r["diff_lower"]),
                                                                                  _f(r["diff_upper"])],
                      "difference_p": _f(r["diff_p"])} for a, r in self.slopes.iterrows()}
        return {"formula": self.formula, "groups": "line_id", "re_formula": self.re_formula, "reml": self.spec.reml,
                "n_obs": self.n_obs, "n_groups": self.n_groups, "converged": self.converged,
                "fallback": self.fallback, "horizon_weeks": self.spec.horizon_weeks,
                "reference_arm": self.reference_arm, "engine": self.engine,
                "fixed_effects": fe, "slopes_per_week": slopes,
                "variance_components": {k: _f(v) for k, v in self.variance_components.items()},
                "warnings": list(self.warnings)}

    def figure(self, title: str | None = None, min_cell: int | None = None) -> go.Figure:
        return trajectory_figure(self, title, min_cell)

    def diagnostics_figure(self) -> go.Figure:
        return diagnostics_figure(self)


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _prepare(trajectories: pd.DataFrame, arms: list[str], spec: MixedSpec, covariates: pd.DataFrame | None,
             warns: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    d = trajectories[(trajectories["arm"].isin(arms)) & (trajectories["weeks"] <= spec.horizon_weeks)]
    d = d.dropna(subset=["cdasi_activity"])[["line_id", "arm", "weeks", "cdasi_activity"]].copy()
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


@recorded(trajectories="derivation.trajectories", covariates="table")
def fit_mixed(trajectories: pd.DataFrame, arms: list[str] | tuple[str, ...], spec: MixedSpec | None = None,
              covariates: pd.DataFrame | None = None, alpha: float = 0.05) -> MixedResult:
    """Fit the mixed model. ``covariates``: a line-level table (line_id plus columns) such as
    :func:`analytics.lines.analysis_table.analysis_table`, needed only when ``spec.covariates`` is set."""
    spec = spec or MixedSpec()
    warns: list[str] = []
    arms = list(arms)
    d, present, covs = _prepare(trajectories, arms, spec, covariates, warns)
    rhs = "weeks * arm" if len(present) >= 2 else "weeks"
    formula = "cdasi_activity ~ " + rhs + "".join(f" + {c}" for c in covs)
    if len(present) < 2:
        warns.append("fewer than two arms with data: the model has no arm terms")
    empty = _empty(spec, formula, arms, present, d, warns, alpha)
    if d["line_id"].nunique() < 3 or len(d) < 6:
        warns.append("too few lines or visits for a mixed model")
        return empty
    if d["cdasi_activity"].nunique() < 2:
        warns.append("CDASI activity is constant in these data: nothing to model")
        return empty

    attempts = [("~weeks", None)] if spec.random == "slope" else []
    attempts.append(("1", None if spec.random == "intercept" else
                     "random intercept only (the random-slope model did not converge or had a singular covariance)"))
    fit, re_used, fallback = None, None, None
    for re_formula, why in attempts:
        fit = _try_fast(d, formula, re_formula, spec.reml, warns) or _try_fit(d, formula, re_formula, spec.reml, warns)
        if fit is not None:
            re_used, fallback = re_formula, why
            break
    if fit is None:
        warns.append("the mixed model could not be fitted with any random-effects structure")
        return empty
    if fallback:
        warns.append(f"fallback: {fallback}")
    result = _result(fit, spec, formula, re_used, arms, present, d, fallback, warns, alpha)
    return dataclasses.replace(result, engine=getattr(fit, "engine", "statsmodels MixedLM (L-BFGS, then Powell)"))


class _FastAdapter:
    """The attributes of a statsmodels MixedLMResults that :func:`_result` reads, from a FastFit."""

    engine = "fast exact profiled REML (the deviance lme4 minimises; analytics.stats.fastlmm)"

    def __init__(self, fit, names: list[str], re_names: list[str], reml: bool):
        self._fit = fit
        self.fe_params = pd.Series(fit.beta, index=names)
        self._cov = pd.DataFrame(fit.cov_beta, index=names, columns=names)
        self.bse_fe = pd.Series(np.sqrt(np.diag(fit.cov_beta)), index=names)
        self.cov_re = pd.DataFrame(fit.cov_re, index=re_names, columns=re_names)
        self.scale = fit.sigma2
        self.resid = fit.resid
        self.fittedvalues = fit.fitted
        self.nobs = len(fit.resid)
        self.converged = fit.converged
        self.reml = reml

    def cov_params(self) -> pd.DataFrame:
        return self._cov


def _try_fast(d: pd.DataFrame, formula: str, re_formula: str, reml: bool, warns: list[str]):
    """The fast exact path (analytics.stats.fastlmm); None when it does not apply or does not converge
    cleanly, and statsmodels is tried instead."""
    from .fastlmm import fit_fast

    try:
        X = dmatrix(formula.split("~", 1)[1], d, return_type="dataframe")
        codes = pd.factorize(d["line_id"])[0]
        fit = fit_fast(X.to_numpy(), d["cdasi_activity"].to_numpy(float), codes,
                       d["weeks"].to_numpy(float) if re_formula != "1" else None, reml)
    except (ValueError, np.linalg.LinAlgError) as exc:
        warns.append(f"fast path not used ({exc}); statsmodels MixedLM instead")
        return None
    ok = fit.converged and np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.cov_beta))
    if not ok or (re_formula != "1" and fit.singular):
        return None
    re_names = ["Group"] if re_formula == "1" else ["Group", "weeks"]
    return _FastAdapter(fit, list(X.columns), re_names, reml)


def _try_fit(d: pd.DataFrame, formula: str, re_formula: str, reml: bool, warns: list[str]):
    local: list[str] = []
    for method in _METHODS:
        local.clear()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = smf.mixedlm(formula, d, groups="line_id", re_formula=re_formula)
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
            return fit
    tag = "random slope" if re_formula != "1" else "random intercept"
    warns.extend(f"({tag} model) {x}" for x in local if x)
    return None


def _empty(spec, formula, arms, present, d, warns, alpha) -> MixedResult:
    cols = ["estimate", "se", "lower", "upper", "p"]
    return MixedResult(spec, formula, "~weeks" if spec.random == "slope" else "1", arms,
                       present[0] if present else None, pd.DataFrame(columns=cols),
                       pd.DataFrame(np.nan, index=pd.Index(arms, name="arm"),
                                    columns=["per_week", "lower", "upper", "per_12_weeks", "diff", "diff_lower",
                                             "diff_upper", "diff_p"]),
                       {}, pd.DataFrame(columns=["arm", "weeks", "mean", "lower", "upper"]),
                       pd.DataFrame(columns=["fitted", "residual", "theoretical", "sample"]),
                       _observed_means(d, spec, alpha), len(d), int(d["line_id"].nunique()) if len(d) else 0,
                       _lines_by_arm(d), False, None, warns, alpha=alpha)


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


def _result(fit, spec, formula, re_used, arms, present, d, fallback, warns, alpha) -> MixedResult:
    z = z_value(alpha)
    fe_names = list(fit.fe_params.index)
    cov = fit.cov_params().loc[fe_names, fe_names].to_numpy()
    est = fit.fe_params.to_numpy()
    se = np.sqrt(np.diag(cov))
    p = 2 * stats.norm.sf(np.abs(est / se))
    fixed = pd.DataFrame({"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se, "p": p},
                         index=fe_names)
    ref = present[0] if present else None
    rows = []
    for arm in arms:
        if arm not in present:
            rows.append({"arm": arm} | dict.fromkeys(["per_week", "lower", "upper", "per_12_weeks", "diff",
                                                      "diff_lower", "diff_upper", "diff_p"], np.nan))
            continue
        L = np.zeros(len(fe_names))
        L[fe_names.index("weeks")] = 1
        inter = f"weeks:arm[T.{arm}]"
        if arm != ref and inter in fe_names:
            L[fe_names.index(inter)] = 1
        s = float(L @ est)
        s_se = float(np.sqrt(L @ cov @ L))
        row = {"arm": arm, "per_week": s, "lower": s - z * s_se, "upper": s + z * s_se, "per_12_weeks": 12 * s}
        if arm != ref and inter in fe_names:
            r = fixed.loc[inter]
            row |= {"diff": r["estimate"], "diff_lower": r["lower"], "diff_upper": r["upper"], "diff_p": r["p"]}
        else:
            row |= {"diff": 0.0 if arm == ref else np.nan, "diff_lower": np.nan, "diff_upper": np.nan,
                    "diff_p": np.nan}
        rows.append(row)
    slopes = pd.DataFrame(rows).set_index("arm")

    cov_re = np.atleast_2d(np.asarray(fit.cov_re))
    vc = {"intercept_var": cov_re[0, 0], "residual_var": float(fit.scale)}
    if cov_re.shape[0] > 1:
        vc |= {"slope_var": cov_re[1, 1], "intercept_slope_cov": cov_re[0, 1]}

    # Model-based mean trajectories per arm (covariates at their means), with 1 - alpha CIs.
    grid = np.linspace(0, spec.horizon_weeks, int(spec.horizon_weeks) + 1)
    new = pd.DataFrame([(a, w) for a in present for w in grid], columns=["arm", "weeks"])
    new["arm"] = pd.Categorical(new["arm"], categories=present)
    for c in fe_names:
        if c in d.columns and c not in ("weeks", "arm"):
            new[c] = d[c].mean()
    info = dmatrix(formula.split("~", 1)[1], d, return_type="dataframe").design_info
    if list(info.column_names) != fe_names:  # same patsy formula, so the same columns
        raise RuntimeError(f"design mismatch: {info.column_names} != {fe_names}")
    X = np.asarray(build_design_matrices([info], new)[0])
    mean = X @ est
    mse = np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X))
    preds = new[["arm", "weeks"]].assign(mean=mean, lower=mean - z * mse, upper=mean + z * mse)
    preds["arm"] = preds["arm"].astype(str)

    resid = np.asarray(fit.resid)
    fitted = np.asarray(fit.fittedvalues)
    order = np.argsort(resid)
    theo = stats.norm.ppf((np.arange(1, len(resid) + 1) - 0.5) / len(resid))
    sample = np.empty_like(resid)
    sample[order] = np.sort(resid)
    theoretical = np.empty_like(resid)
    theoretical[order] = theo * np.std(resid, ddof=1)
    diag = pd.DataFrame({"fitted": fitted, "residual": resid, "theoretical": theoretical, "sample": sample})
    return MixedResult(spec, formula, re_used if re_used == "1" else "~weeks", arms, ref, fixed, slopes, vc, preds,
                       diag, _observed_means(d, spec, alpha), int(fit.nobs), int(d["line_id"].nunique()),
                       _lines_by_arm(d), True, fallback, warns, fit, alpha=alpha)


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
    random = "random intercept and slope" if result.re_formula == "~weeks" else "random intercept"
    sub = (f"Linear mixed model (REML), {random} by line; {count_text(result.n_obs, min_cell)} visits of "
           f"{count_text(result.n_groups, min_cell)} lines<br>"
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
