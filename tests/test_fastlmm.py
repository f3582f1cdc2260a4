"""The fast exact mixed-model path against lme4 and statsmodels, on the reference data and on
random designs: unbalanced groups, single-visit groups, near-zero slope variance, collinear
covariates (which fall back to statsmodels cleanly); its exact gradient at one and two levels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analytics.stats.fastlmm import fit_lmm
from analytics.stats.mixed import MixedSpec, fit_mixed

from .conftest import ROOT

ARMS = ["MMF", "IVIG", "JAKi"]
REF = ROOT / "tests" / "reference"


def test_fast_path_matches_lme4_within_issue7_tolerances():
    from .test_reference import assert_matches_lme4

    tr = pd.read_csv(REF / "trajectories_input.csv")
    res = fit_mixed(tr, ARMS, MixedSpec(horizon_weeks=24, levels="line"))
    assert res.engine.startswith("fast exact") and res.fallback is None
    assert_matches_lme4(res, {"rel": 1e-4}, vc_rel=1e-3)  # issue 7: fixed effects 1e-4, variances 1e-3


def _design(seed: int, n_lines: int = 150, single_visit_share: float = 0.2):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_lines):
        arm = ARMS[i % 3]
        b0, b1 = rng.normal(0, 5), rng.normal(0, 0.25)
        n_visits = 1 if rng.random() < single_visit_share else int(rng.integers(2, 8))  # unbalanced
        weeks = np.sort(rng.choice(np.arange(0, 25), size=n_visits, replace=False)).astype(float)
        for w in weeks:
            rows.append((f"L{i}", arm, w, 14 + {"MMF": 0, "IVIG": -1, "JAKi": 1}[arm] + b0
                         + ({"MMF": -0.3, "IVIG": -0.5, "JAKi": -0.7}[arm] + b1) * w + rng.normal(0, 2.5)))
    d = pd.DataFrame(rows, columns=["line_id", "arm", "weeks", "cdasi_activity"])
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    return d


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fast_path_matches_statsmodels_on_random_unbalanced_designs(seed):
    from patsy import dmatrix

    d = _design(seed)
    X = dmatrix("weeks * arm", d, return_type="dataframe")
    fast = fit_lmm(X.to_numpy(), d["cdasi_activity"].to_numpy(), pd.factorize(d["line_id"])[0], None,
                   d["weeks"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm = smf.mixedlm("cdasi_activity ~ weeks * arm", d, groups="line_id", re_formula="~weeks").fit(
            reml=True, method=["lbfgs"])
    assert sm.converged and fast.converged
    # both at the same optimum: fixed effects within 1e-4 relative (1e-4 absolute near 0)
    np.testing.assert_allclose(fast.beta, sm.fe_params.to_numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fast.sigma2, sm.scale, rtol=1e-3)
    np.testing.assert_allclose(fast.cov_re["line"], np.asarray(sm.cov_re), rtol=1e-3, atol=1e-5)
    assert (d.groupby("line_id").size() == 1).any()  # single-visit groups were in the design


def test_collinear_covariates_fall_back_cleanly():
    d = _design(5)
    cov = pd.DataFrame({"line_id": d["line_id"].unique()})
    cov["a"] = np.arange(len(cov)) % 2
    cov["b"] = 1 - cov["a"]  # a + b = 1: collinear with the intercept
    res = fit_mixed(d.assign(arm=d["arm"].astype(str)), ARMS, MixedSpec(covariates=("a", "b")), cov)
    assert any("fast path not used" in w for w in res.warnings)
    assert not res.engine.startswith("fast") or not res.converged


def test_single_group_design_errors_become_warnings():
    d = pd.DataFrame({"line_id": ["L1"] * 4, "arm": ["MMF"] * 4, "weeks": [0.0, 4, 8, 12],
                      "cdasi_activity": [20.0, 18, 15, 14]})
    res = fit_mixed(d, ARMS)
    assert res.warnings  # too few lines: a result with a warning, never an exception


def test_no_residual_degrees_of_freedom_is_a_clear_error_not_a_division_by_zero():
    """Six visits for six fixed effects (weeks * arm over three arms): REML's n - p is zero. The
    fast path refuses the design with a ValueError, and fit_mixed returns an empty result that
    says why (hypothesis found the ZeroDivisionError this replaced)."""
    d = pd.DataFrame({"line_id": ["L1", "L1", "L2", "L2", "L3", "L3"],
                      "arm": ["MMF", "MMF", "IVIG", "IVIG", "JAKi", "JAKi"],
                      "weeks": [0.0, 8, 0, 6, 0, 12], "cdasi_activity": [20.0, 15, 30, 22, 25, 10]})
    X = np.column_stack([np.ones(6), d["weeks"], d["arm"] == "IVIG", d["arm"] == "JAKi",
                         d["weeks"] * (d["arm"] == "IVIG"), d["weeks"] * (d["arm"] == "JAKi")]).astype(float)
    with pytest.raises(ValueError, match="no residual degrees of freedom"):
        fit_lmm(X, d["cdasi_activity"].to_numpy(), pd.factorize(d["line_id"])[0], weeks=d["weeks"].to_numpy())
    res = fit_mixed(d, ARMS)
    assert not res.converged and any("no residual degrees of freedom" in w for w in res.warnings), res.warnings


STRUCTURES = [{"line": 2}, {"line": 1}, {"patient": 2, "line": 2}, {"patient": 1, "line": 2},
              {"patient": 1, "line": 1}, {"patient": 2, "line": 1}]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("qs", STRUCTURES, ids=lambda q: "+".join(f"{k}{v}" for k, v in q.items()))
def test_the_deviance_gradient_is_exact(monkeypatch, qs, reml):
    """The optimiser gets the deviance's gradient in closed form; it must equal central differences
    of the deviance, away from the optimum and near a zero slope variance, at one level and with
    lines nested in patients."""
    from patsy import dmatrix

    from analytics.stats import fastlmm

    from .nested_sim import simulate_nested

    seen = []
    real = fastlmm._preconditioned_lbfgs

    def spy(fun, x0):
        seen.append(fun)
        return real(fun, x0)

    monkeypatch.setattr(fastlmm, "_preconditioned_lbfgs", spy)
    d = simulate_nested(60, 5)
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    X = dmatrix("weeks * arm", d, return_type="dataframe").to_numpy()
    fit_lmm(X, d["cdasi_activity"].to_numpy(), pd.factorize(d["line_id"])[0],
            pd.factorize(d["patient_id"])[0] if "patient" in qs else None, d["weeks"].to_numpy(),
            q_line=qs["line"], q_patient=qs.get("patient", 0), reml=reml, satterthwaite=False)
    f = seen[0]  # (deviance, gradient) per observation
    per_level = {1: [[1.0], [0.2], [-2.5]], 2: [[1.0, 0.2, 0.5], [0.3, -0.1, 0.02], [2.0, 0.5, -0.3]]}
    for k in range(3):
        theta = np.concatenate([per_level[qs["line"]][k]] + ([per_level[qs["patient"]][2 - k]] if "patient" in qs else []))
        _, grad = f(theta)
        eps = 1e-6
        numeric = [(f(theta + eps * e)[0] - f(theta - eps * e)[0]) / (2 * eps) for e in np.eye(len(theta))]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_lines_must_be_nested_in_patients():
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    with pytest.raises(ValueError, match="nested"):
        fit_lmm(X, np.arange(6.0) ** 1.5, np.array([0, 0, 1, 1, 0, 0]), np.array([0, 0, 0, 0, 1, 1]),
                np.arange(6.0), q_line=1, q_patient=1)


def test_satterthwaite_df_is_invariant_to_the_order_of_the_rows():
    """The fit sorts by patient and line internally: shuffled rows give the same df and fitted values
    (in the caller's order)."""
    from patsy import dmatrix

    from .nested_sim import simulate_nested

    d = simulate_nested(80, 9)
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    shuffled = d.sample(frac=1, random_state=3)
    fits = []
    for frame in (d, shuffled):
        X = dmatrix("weeks * arm", frame, return_type="dataframe").to_numpy()
        fits.append(fit_lmm(X, frame["cdasi_activity"].to_numpy(), pd.factorize(frame["line_id"])[0],
                            pd.factorize(frame["patient_id"])[0], frame["weeks"].to_numpy()))
    a, b = fits
    # the same optimum: the deviance agrees to rounding (2e-14 relative). The optimiser stops at
    # its tolerance, not at one point: the lines' slope variance (theta about 2e-4, near its bound)
    # is flat there, and on an AMD EPYC (another CPU, other rounding) the two fits stopped 2e-4
    # apart, relative, in that component, which moved the weeks coefficient by 1.2e-6 relative;
    # so beta is held to 1e-5
    np.testing.assert_allclose(a.deviance, b.deviance, rtol=1e-10)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-5)
    np.testing.assert_allclose([a.df(e) for e in np.eye(6)], [b.df(e) for e in np.eye(6)], rtol=1e-4)
    np.testing.assert_allclose(a.fitted[shuffled.index.to_numpy()], b.fitted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qs", [{"line": 2}, {"patient": 2, "line": 2}, {"patient": 1, "line": 2}],
                         ids=lambda q: "+".join(f"{k}{v}" for k, v in q.items()))
@pytest.mark.parametrize("cells", [False, True], ids=["plain", "cells"])
def test_a_kept_evaluation_is_not_overwritten_by_the_next(qs, cells):
    """The deviance is computed in work arrays kept between evaluations. An evaluation whose blocks
    the caller keeps (the final one of a fit, the Hessian's) is handed those arrays: later
    evaluations, kept or not, at other parameters must leave its blocks as they were."""
    from patsy import dmatrix

    from analytics.stats.fastlmm import _Design

    from .nested_sim import simulate_nested

    d = simulate_nested(50, 4)
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    X = dmatrix("weeks * arm", d, return_type="dataframe").to_numpy()
    design = _Design(X, d["cdasi_activity"].to_numpy(float), pd.factorize(d["line_id"])[0],
                     pd.factorize(d["patient_id"])[0] if "patient" in qs else None, d["weeks"].to_numpy(float),
                     qs["line"], qs.get("patient", 0), True, pd.factorize(d["arm"])[0] if cells else None)
    assert (design.T is not None) == cells
    theta = np.full(design.n_theta, 0.4)
    kept = design.evaluate(theta, level=2)
    before = [[b.copy() for b in s["B"]] for s in kept["levels"]]
    for other in (theta * 2, theta / 3):
        design.deviance_and_gradient(other)  # work arrays reused in place
        design.evaluate(other, level=1)  # another kept evaluation
    for s, old in zip(kept["levels"], before):
        for b, b0 in zip(s["B"], old):
            np.testing.assert_array_equal(b, b0)
    again = design.evaluate(theta, level=2)
    for s, t in zip(kept["levels"], again["levels"]):
        for b, b2 in zip(s["B"], t["B"]):
            np.testing.assert_array_equal(b, b2)


def test_the_preconditioned_search_finds_the_plain_searchs_optimum_in_theta():
    """The preconditioner changes the coordinates L-BFGS-B works in, not the optimum: on a badly
    scaled, non-quadratic function it ends where plain L-BFGS-B ends, reports x and the gradient
    in the original coordinates, and needs fewer evaluations; where the start cannot be
    evaluated it is plain L-BFGS-B."""
    from scipy import optimize

    from analytics.stats.fastlmm import _preconditioned_lbfgs

    scales = np.array([1e4, 1.0, 1e-2])
    calls = []

    def f(x):
        calls.append(1)
        x = np.asarray(x, float)
        value = float(np.sum(scales * (x - 1.0) ** 2) + 0.1 * np.sum((x - 1.0) ** 4))
        return value, 2 * scales * (x - 1.0) + 0.4 * (x - 1.0) ** 3

    start = np.array([0.5, -2.0, 3.0])
    ours = _preconditioned_lbfgs(f, start)
    ours_calls = len(calls)
    calls.clear()
    plain = optimize.minimize(f, start, jac=True, method="L-BFGS-B", options={"maxiter": 3000, "ftol": 1e-13,
                                                                              "gtol": 1e-10})
    np.testing.assert_allclose(ours.x, [1.0, 1.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(ours.x, plain.x, atol=1e-4)
    np.testing.assert_allclose(ours.jac, f(ours.x)[1])
    assert ours_calls < len(calls)

    def nowhere(x):
        return 1e300, np.zeros_like(x)

    res = _preconditioned_lbfgs(nowhere, start)
    np.testing.assert_array_equal(res.x, start)


@pytest.mark.parametrize("qs", [{"line": 1}, {"line": 2}, {"patient": 1, "line": 1}, {"patient": 1, "line": 2},
                                {"patient": 2, "line": 2}],
                         ids=lambda q: "+".join(f"{k}{v}" for k, v in q.items()))
def test_a_large_fit_starts_from_a_subsample_and_reaches_the_same_optimum(monkeypatch, qs):
    """Above SUBSAMPLE_ABOVE outermost groups the search starts from a fit on a tenth of them; the
    optimum is the full data's all the same. The threshold is lowered here so that 400 patients
    take that path, and the fit is compared with the one from lme4's start."""
    from patsy import dmatrix

    from analytics.stats import fastlmm

    from .nested_sim import simulate_nested

    d = simulate_nested(400, 11)
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    X = dmatrix("weeks * arm", d, return_type="dataframe").to_numpy()
    args = (X, d["cdasi_activity"].to_numpy(), pd.factorize(d["line_id"])[0],
            pd.factorize(d["patient_id"])[0] if "patient" in qs else None, d["weeks"].to_numpy())
    kw = {"q_line": qs["line"], "q_patient": qs.get("patient", 0)}
    plain = fit_lmm(*args, **kw)
    starts = []
    real = fastlmm._subsample_start

    def spy(*a):
        starts.append(real(*a))
        return starts[-1]

    monkeypatch.setattr(fastlmm, "SUBSAMPLE_ABOVE", 30)
    monkeypatch.setattr(fastlmm, "_subsample_start", spy)
    sub = fit_lmm(*args, **kw)
    # the subsample was fitted (the last call is the outermost one) and its optimum is the start
    assert starts and starts[-1] is not None
    assert sub.converged and plain.converged
    assert sub.deviance == pytest.approx(plain.deviance, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(sub.beta, plain.beta, rtol=1e-5, atol=1e-7)
    for lev in plain.cov_re:
        np.testing.assert_allclose(sub.cov_re[lev], plain.cov_re[lev], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose([sub.df(e) for e in np.eye(6)], [plain.df(e) for e in np.eye(6)], rtol=1e-3)


def test_a_subsample_that_cannot_be_fitted_gives_no_start(monkeypatch):
    """A subsample whose design is rank-deficient (an arm that only a few patients had, all left
    out) gives no start: the fit starts from lme4's, as a small one does."""
    from analytics.stats import fastlmm

    monkeypatch.setattr(fastlmm, "SUBSAMPLE_ABOVE", 30)
    rng = np.random.default_rng(1)
    n = 400
    lines = np.repeat(np.arange(n), 3)
    rare = np.zeros(len(lines))
    rare[lines == 7] = 1.0  # one line of one patient: a tenth of the patients almost never holds it
    X = np.column_stack([np.ones(len(lines)), np.tile([0.0, 4.0, 8.0], n), rare])
    y = X @ [10.0, -0.3, 2.0] + rng.normal(0, 1, n)[lines] + rng.normal(0, 1, len(lines))
    keep = np.random.default_rng(fastlmm.SUBSAMPLE_SEED).random(n) < fastlmm.SUBSAMPLE_SHARE
    assert not keep[7]  # the rare line is not in the subsample
    assert fastlmm._subsample_start(X, y, lines, None, X[:, 1], 1, 0, True) is None
    fit = fit_lmm(X, y, lines, None, X[:, 1], q_line=1)
    assert fit.converged


def _nested_design(n_patients: int = 60, seed: int = 5):
    from patsy import dmatrix

    from .nested_sim import simulate_nested

    d = simulate_nested(n_patients, seed)
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    X = dmatrix("weeks * arm", d, return_type="dataframe").to_numpy()
    return d, X


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("qs", STRUCTURES, ids=lambda q: "+".join(f"{k}{v}" for k, v in q.items()))
def test_the_cell_basis_computes_the_plain_paths_numbers(qs, reml):
    """With the arm as cells (``weeks * arm``: two columns per arm), every per-line block is 3 rows
    instead of p + 1, and the lines' forms with a patient level are computed without the lines'
    blocks. The deviance, beta, the gradient and d cov(beta) / d theta must be the plain path's, to
    rounding, away from the optimum; the fits must agree to the optimiser's tolerance."""
    from analytics.stats.fastlmm import _Design

    d, X = _nested_design()
    args = (X, d["cdasi_activity"].to_numpy(float), pd.factorize(d["line_id"])[0],
            pd.factorize(d["patient_id"])[0] if "patient" in qs else None, d["weeks"].to_numpy(float),
            qs["line"], qs.get("patient", 0), reml)
    cells = pd.factorize(d["arm"])[0]
    plain, cell = _Design(*args), _Design(*args, cells)
    assert plain.T is None and cell.T is not None and cell.R[0].shape[0] == 3 and plain.R[0].shape[0] == 7
    for theta in (np.linspace(0.3, 0.9, plain.n_theta), np.linspace(-1.2, 0.4, plain.n_theta)):
        a, b = plain.evaluate(theta, level=2), cell.evaluate(theta, level=2)
        assert b["dev"] == pytest.approx(a["dev"], rel=1e-12)
        np.testing.assert_allclose(b["beta"], a["beta"], rtol=1e-10, atol=1e-12)
        for x, y in zip(plain.gradient_parts(a), cell.gradient_parts(b)):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-9)
        for x, y in zip(plain.dcov_dtheta(a, 1.7), cell.dcov_dtheta(b, 1.7)):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-12)
    fa = fit_lmm(*args[:5], q_line=qs["line"], q_patient=qs.get("patient", 0), reml=reml)
    fb = fit_lmm(*args[:5], q_line=qs["line"], q_patient=qs.get("patient", 0), reml=reml, cells=cells)
    assert fb.deviance == pytest.approx(fa.deviance, rel=1e-10)
    np.testing.assert_allclose(fb.beta, fa.beta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fb.fitted, fa.fitted, rtol=1e-5, atol=1e-5)  # BLUPs mapped back to the rows
    np.testing.assert_allclose([fb.df(e) for e in np.eye(6)], [fa.df(e) for e in np.eye(6)], rtol=1e-3)


def test_the_cell_basis_is_used_only_where_it_reproduces_x():
    """A covariate that varies within an arm, or a line whose visits are in two cells, or cells far
    wider than X: the plain path, with the same fit."""
    from analytics.stats.fastlmm import _cell_basis, _Design

    d, X = _nested_design(40, 3)
    y, lines, w = d["cdasi_activity"].to_numpy(float), pd.factorize(d["line_id"])[0], d["weeks"].to_numpy(float)
    cells = pd.factorize(d["arm"])[0]
    T = _cell_basis(X, w, cells)
    assert T is not None and T.shape == (6, 6)
    rows = np.arange(len(w))
    np.testing.assert_allclose(T[2 * cells] + w[:, None] * T[2 * cells + 1], X, atol=1e-12)  # X = X~ T
    extra = np.column_stack([X, np.sin(rows)])  # varies within every line
    assert _cell_basis(extra, w, cells) is None
    line_level = np.column_stack([X, pd.factorize(d["line_id"])[0] % 5 == 0])  # constant per line, not per arm
    assert _cell_basis(line_level, w, cells) is None
    assert _cell_basis(X, w, rows % 40) is None  # 80 columns for 6: not worth it
    split = cells.copy()
    split[0] = (split[0] + 1) % 3  # the first line's first visit in another arm's cell
    assert _cell_basis(X, w, split) is None or _Design(X, y, lines, None, w, 2, 0, True, split).T is None
    plain = fit_lmm(extra, y, lines, None, w, q_line=1)
    again = fit_lmm(extra, y, lines, None, w, q_line=1, cells=cells)
    np.testing.assert_array_equal(again.beta, plain.beta)


def test_the_search_stops_where_the_deviance_is_flat_to_rounding(monkeypatch):
    """At the optimum of a large fit the deviance no longer changes in its last digits, and L-BFGS-B's
    line search can spend tens of evaluations there before its ftol test is reached. The search stops
    at the first step whose value is within rounding of the best, when the best point's gradient
    predicts less than ftol more decrease: it reports success, at the optimum, in fewer evaluations
    than the same search without the rule."""
    from analytics.stats import fastlmm

    scales = np.array([2.0, 0.2])

    def f(x):  # smooth, with rounding noise of 1e-14 in the value, as a deviance summed over a million terms
        calls.append(1)
        u = np.asarray(x, float) - 1.0
        value = 6.0 + float(np.sum(np.log(np.cosh(scales * u)))) + 1e-14 * float(np.sin(1e8 * x[0]))
        return value, scales * np.tanh(scales * u)

    counts, rounding = {}, fastlmm._FLAT
    for rule in (rounding, -1.0):
        monkeypatch.setattr(fastlmm, "_FLAT", rule)
        calls = []
        res = fastlmm._preconditioned_lbfgs(f, np.array([2.0, 2.0]))
        assert res.success
        np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-5)
        assert res.fun == pytest.approx(6.0, abs=1e-12)
        counts[rule] = len(calls)
    assert counts[rounding] <= 20 and counts[rounding] < counts[-1.0], counts


def test_the_bounded_polish_stops_at_the_bound_where_only_the_bound_holds_the_gradient(monkeypatch):
    """The polish of a singular fit searches with lme4's bounds (a diagonal of Lambda >= 0). At the
    bounded optimum the gradient of the bounded element is not zero, but it pushes against the bound:
    it predicts no decrease, so the flat-to-rounding stop applies there, in the search's metric. The
    result is the bounded optimum, in a handful of evaluations; without the stop the same search
    spends more there (how many depends on scipy's line search: 16 with scipy 1.11, 47 with 1.17,
    where it ends in a failed line search)."""
    from analytics.stats import fastlmm

    def f(x):
        calls.append(1)
        u = np.asarray(x, float) - [1.0, 0.0]
        value = 6.0 + float(np.log(np.cosh(0.5 * u[0]))) + 0.3 * u[1] + 0.5 * u[1] ** 2 + 1e-14 * float(np.sin(1e8 * x[0]))
        return value, np.array([0.5 * np.tanh(0.5 * u[0]), 0.3 + u[1]])

    counts, results, rounding = {}, {}, fastlmm._FLAT
    for rule in (rounding, -1.0):
        monkeypatch.setattr(fastlmm, "_FLAT", rule)
        calls = []
        results[rule] = fastlmm._lbfgs(f, np.array([3.0, 1.0]), metric=np.diag([2.0, 1.0]),
                                       bounds=[(None, None), (0.0, None)])
        counts[rule] = len(calls)
    assert results[rounding].success
    np.testing.assert_allclose(results[rounding].x, [1.0, 0.0], atol=1e-6)
    assert counts[rounding] <= 12 and counts[rounding] < counts[-1.0], counts  # scipy 1.11: 8 vs 16; 1.17: 8 vs 47
