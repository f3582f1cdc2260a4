"""A fast, exact path for the default mixed model: y = X beta + Z_g b_g + e with one grouping
factor (line_id) and a random intercept, or a random intercept and slope for weeks.

It minimises the same profiled REML (or ML) deviance as lme4 (Bates et al., J Stat Softw 2015,
section 3): with relative covariance factor Lambda(theta) and, per group,
M_g = I + Lambda' Z_g'Z_g Lambda,

    d(theta) = sum_g log|M_g| + log|A| + (N - p) (1 + log(2 pi rss / (N - p)))   (REML)

where A = X'V^-1 X and rss = y'V^-1 y - b'A^-1 b are built from per-group sufficient statistics
(Z_g'Z_g, Z_g'X_g, Z_g'y_g) through the Woodbury identity. Every step is vectorised over groups
with numpy, so a fit costs O(groups x p^2) per deviance evaluation, not O(observations).
beta and sigma^2 are profiled out; theta (3 numbers, or 1) is optimised with L-BFGS-B within
bounds (diagonal of Lambda >= 0), from several starts. :func:`analytics.stats.mixed.fit_mixed` uses
it when the model has this shape and falls back to statsmodels otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

__all__ = ["FastFit", "fit_fast"]


@dataclass
class FastFit:
    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    cov_re: np.ndarray  # q x q covariance of the random effects
    theta: np.ndarray
    deviance: float
    converged: bool
    fitted: np.ndarray  # conditional fitted values X beta + Z b
    resid: np.ndarray
    blups: np.ndarray  # groups x q
    message: str = ""

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular`` rule: a diagonal element of theta (the relative Cholesky factor)
        below 1e-4, i.e. a variance at zero or a correlation at +-1."""
        diag = [self.theta[0]] if len(self.theta) == 1 else [self.theta[0], self.theta[2]]
        return bool(np.min(np.abs(diag)) < 1e-4)


def _lambda(theta: np.ndarray, q: int) -> np.ndarray:
    if q == 1:
        return np.array([[theta[0]]])
    return np.array([[theta[0], 0.0], [theta[1], theta[2]]])


def fit_fast(X: np.ndarray, y: np.ndarray, groups: np.ndarray, z_slope: np.ndarray | None,
             reml: bool = True) -> FastFit:
    """Fit the model. ``groups``: integer codes 0..G-1; ``z_slope``: the random-slope covariate
    (weeks) or None for a random intercept only. Raises ValueError when X is rank-deficient."""
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    g = np.asarray(groups)
    n, p = X.shape
    G = int(g.max()) + 1
    q = 1 if z_slope is None else 2
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("the fixed-effects design is rank-deficient (collinear covariates)")
    Z = np.ones((n, 1)) if q == 1 else np.column_stack([np.ones(n), np.asarray(z_slope, float)])

    def gsum(a: np.ndarray) -> np.ndarray:  # sum rows of a (n x k) within groups -> (G x k)
        out = np.zeros((G,) + a.shape[1:])
        np.add.at(out, g, a)
        return out

    ZtZ = gsum(np.einsum("ni,nj->nij", Z, Z))  # G x q x q
    ZtX = gsum(np.einsum("ni,nj->nij", Z, X))  # G x q x p
    Zty = gsum(Z * y[:, None])  # G x q
    XtX, Xty, yty = X.T @ X, X.T @ y, float(y @ y)
    dof = n - p if reml else n

    # Per-group entries of Z'Z (closed-form 2x2 algebra below; batched LAPACK on tiny matrices is slow)
    z00 = ZtZ[:, 0, 0]
    z01 = ZtZ[:, 0, 1] if q == 2 else None
    z11 = ZtZ[:, 1, 1] if q == 2 else None
    ZtX2 = ZtX.reshape(G * q, p)

    def pieces(theta: np.ndarray):
        L = _lambda(theta, q)
        if q == 1:
            m = 1.0 + theta[0] ** 2 * z00
            logdet = np.log(m)
            W = (theta[0] ** 2 / m)[:, None, None]
        else:
            a, c, d = theta  # L = [[a, 0], [c, d]]
            # M = I + L' Z'Z L, entries in closed form
            m00 = 1 + a * a * z00 + 2 * a * c * z01 + c * c * z11
            m01 = a * d * z01 + c * d * z11
            m11 = 1 + d * d * z11
            det = m00 * m11 - m01 * m01
            logdet = np.log(det)
            i00, i01, i11 = m11 / det, -m01 / det, m00 / det  # M^-1
            # W = L M^-1 L'
            w00 = a * a * i00
            w01 = a * (c * i00 + d * i01)
            w11 = c * c * i00 + 2 * c * d * i01 + d * d * i11
            W = np.stack([np.stack([w00, w01], -1), np.stack([w01, w11], -1)], -2)
        WZX = np.matmul(W, ZtX)  # G x q x p
        WZy = np.matmul(W, Zty[:, :, None])[:, :, 0]  # G x q
        A = XtX - ZtX2.T @ WZX.reshape(G * q, p)
        b = Xty - ZtX2.T @ WZy.reshape(G * q)
        c_ = yty - float(np.sum(Zty * WZy))
        return L, logdet, W, A, b, c_

    def deviance(theta: np.ndarray) -> float:
        _, logdet, _, A, b, c = pieces(theta)
        sign_a, logdet_a = np.linalg.slogdet(A)
        if sign_a <= 0 or not np.all(np.isfinite(logdet)):
            return 1e300
        beta = np.linalg.solve(A, b)
        rss = c - b @ beta
        if not rss > 0:
            return 1e300
        dev = float(np.sum(logdet)) + dof * (1 + np.log(2 * np.pi * rss / dof))
        return dev + logdet_a if reml else dev

    bounds = [(0, None)] if q == 1 else [(0, None), (None, None), (0, None)]
    starts = [np.array([1.0])] if q == 1 else [np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.1])]
    best = None
    for k, start in enumerate(starts):
        # The deviance per observation: the same minimum, but gradients of order 1 at any size, so the
        # finite-difference line search stays sound with hundreds of thousands of visits.
        res = optimize.minimize(lambda th: deviance(th) / n, start, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10})
        res.fun = res.fun * n
        if not res.success:
            # If L-BFGS-B's line search still stops early ("ABNORMAL_TERMINATION_IN_LNSRCH"), polish
            # with Nelder-Mead from where it stopped.
            polish = optimize.minimize(deviance, res.x, method="Nelder-Mead",
                                       options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 4000})
            if polish.fun <= res.fun + 1e-9:
                polish.x = np.abs(polish.x) if q == 1 else np.array([abs(polish.x[0]), polish.x[1] * np.sign(
                    polish.x[0] or 1), abs(polish.x[2])])  # same Lambda Lambda' with a non-negative diagonal
                res = polish
        if best is None or res.fun < best.fun - 1e-9:
            best = res
        on_bound = q == 2 and min(best.x[0], best.x[2]) < 1e-6
        if k == 0 and best.success and not on_bound:
            break  # a second start only when the first one struggled or stopped on a bound
    theta = best.x
    L, _, W, A, b, c = pieces(theta)
    beta = np.linalg.solve(A, b)
    rss = c - b @ beta
    sigma2 = float(rss / dof)
    cov_beta = sigma2 * np.linalg.inv(A)
    # BLUPs: b_g = L M_g^-1 L' Z_g'(y_g - X_g beta)
    r_g = Zty - np.einsum("gki,i->gk", ZtX, beta)
    blups = np.einsum("gij,gj->gi", W, r_g)
    fitted = X @ beta + np.sum(Z * blups[g], axis=1)
    return FastFit(beta, cov_beta, sigma2, sigma2 * (L @ L.T), theta, float(best.fun), bool(best.success),
                   fitted, y - fitted, blups, str(best.message))
