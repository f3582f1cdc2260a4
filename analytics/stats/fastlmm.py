"""A fast, exact path for the default mixed model: y = X beta + Z_g b_g + e with one grouping
factor (line_id) and a random intercept, or a random intercept and slope for weeks.

It minimises the same profiled REML (or ML) deviance as lme4 (Bates et al., J Stat Softw 2015,
section 3): with relative covariance factor Lambda(theta) and, per group,
M_g = I + Lambda' Z_g'Z_g Lambda,

    d(theta) = sum_g log|M_g| + log|A| + (N - p) (1 + log(2 pi rss / (N - p)))   (REML)

where A = X'V^-1 X and rss = y'V^-1 y - b'A^-1 b are built from per-group sufficient statistics
(Z_g'Z_g, Z_g'X_g, Z_g'y_g) through the Woodbury identity. Every step is vectorised over groups
with numpy, so a fit costs O(groups x p^2) per deviance evaluation, not O(observations).
beta and sigma^2 are profiled out; theta (3 numbers, or 1) is optimised by L-BFGS-B with the exact
gradient (below), from up to two starts, and reported with a non-negative diagonal of Lambda.
:func:`analytics.stats.mixed.fit_mixed` uses it when the model has this shape and falls back to
statsmodels otherwise.
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

    ZtX0, Zty0 = ZtX[:, 0, :], Zty[:, 0]
    ZtX1, Zty1 = (ZtX[:, 1, :], Zty[:, 1]) if q == 2 else (None, None)

    def pieces(theta: np.ndarray):
        """Per group, log|M|, the entries of M^-1 and of W = L M^-1 L'; then A, b and c of the
        profiled deviance. The sums over groups are matrix products on (groups x p) arrays."""
        if q == 1:
            m = 1.0 + theta[0] ** 2 * z00
            logdet = np.log(m)
            w00 = theta[0] ** 2 / m
            WZX0, WZy0 = w00[:, None] * ZtX0, w00 * Zty0
            A = XtX - ZtX0.T @ WZX0
            b = Xty - ZtX0.T @ WZy0
            c_ = yty - float(Zty0 @ WZy0)
            return logdet, (m,), (w00,), A, b, c_
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
        WZX0 = w00[:, None] * ZtX0 + w01[:, None] * ZtX1
        WZX1 = w01[:, None] * ZtX0 + w11[:, None] * ZtX1
        WZy0, WZy1 = w00 * Zty0 + w01 * Zty1, w01 * Zty0 + w11 * Zty1
        A = XtX - (ZtX0.T @ WZX0 + ZtX1.T @ WZX1)
        b = Xty - (ZtX0.T @ WZy0 + ZtX1.T @ WZy1)
        c_ = yty - float(Zty0 @ WZy0 + Zty1 @ WZy1)
        return logdet, (i00, i01, i11), (w00, w01, w11), A, b, c_

    def deviance_and_gradient(theta: np.ndarray, gradient: bool = True) -> tuple[float, np.ndarray | None]:
        """The deviance and (``gradient``) its exact gradient in theta. With u = (I - L M^-1 L' Z'Z)
        column r and v = (M^-1 L') row c for the entry (r, c) of L that theta_k is, dW = Q + Q'
        with Q = u v', so: d log|M| = 2 (M^-1 L' Z'Z)[c, r]; d rss = -2 (r'u)(v'r) summed over
        groups with r = Z'y - Z'X beta; d log|A| = -2 v' K u with K = Z'X A^-1 X'Z."""
        logdet, inv, _, A, b, c_ = pieces(theta)
        sign_a, logdet_a = np.linalg.slogdet(A)
        if sign_a <= 0 or not np.all(np.isfinite(logdet)):
            return 1e300, np.zeros_like(theta)
        beta = np.linalg.solve(A, b)
        rss = c_ - b @ beta
        if not rss > 0:
            return 1e300, np.zeros_like(theta)
        dev = float(np.sum(logdet)) + dof * (1 + np.log(2 * np.pi * rss / dof)) + (logdet_a if reml else 0.0)
        if not gradient:
            return dev, None
        A_inv = np.linalg.inv(A)
        r0 = Zty0 - ZtX0 @ beta
        XA0 = ZtX0 @ A_inv
        k00 = np.einsum("gp,gp->g", XA0, ZtX0)
        if q == 1:
            (m,) = inv
            # W = t^2 / m: dW = 2 t / m^2; d log m = 2 t z / m
            dw = 2 * theta[0] / m**2
            grad = np.array([np.sum(2 * theta[0] * z00 / m) - dof / rss * np.sum(dw * r0 * r0)
                             - (np.sum(dw * k00) if reml else 0.0)])
            return dev, grad
        i00, i01, i11 = inv
        a, c, d = theta
        r1 = Zty1 - ZtX1 @ beta
        XA1 = ZtX1 @ A_inv
        k01 = np.einsum("gp,gp->g", XA0, ZtX1)
        k11 = np.einsum("gp,gp->g", XA1, ZtX1)
        # G = L M^-1 (H = M^-1 L' = G'); U = Z'Z L; R = I - G U'; P = H Z'Z
        g00, g01 = a * i00, a * i01
        g10, g11 = c * i00 + d * i01, c * i01 + d * i11
        u00, u01, u10, u11 = z00 * a + z01 * c, z01 * d, z01 * a + z11 * c, z11 * d
        R00 = 1 - (g00 * u00 + g01 * u01)
        R01 = -(g00 * u10 + g01 * u11)
        R10 = -(g10 * u00 + g11 * u01)
        R11 = 1 - (g10 * u10 + g11 * u11)
        H = ((g00, g10), (g01, g11))  # H[c] = row c of M^-1 L'
        S = ((z00, z01), (z01, z11))
        grad = np.zeros(3)
        for k, (row, col) in enumerate(((0, 0), (1, 0), (1, 1))):  # theta = (L00, L10, L11)
            u0, u1 = (R00, R10) if row == 0 else (R01, R11)
            v0, v1 = H[col]
            p_cr = v0 * S[0][row] + v1 * S[1][row]
            ru, vr = r0 * u0 + r1 * u1, v0 * r0 + v1 * r1
            vku = v0 * (k00 * u0 + k01 * u1) + v1 * (k01 * u0 + k11 * u1)
            grad[k] = 2 * np.sum(p_cr) - dof / rss * 2 * np.sum(ru * vr) - (2 * np.sum(vku) if reml else 0.0)
        return dev, grad

    def deviance(theta: np.ndarray) -> float:
        return deviance_and_gradient(theta, gradient=False)[0]

    def canonical(theta: np.ndarray) -> np.ndarray:
        """The same Lambda Lambda' with a non-negative diagonal (the deviance is unchanged by the sign
        of Lambda's second column, and of the first column as a whole)."""
        theta = np.asarray(theta, float)
        if q == 1:
            return np.abs(theta)
        return np.array([abs(theta[0]), theta[1] * np.sign(theta[0] or 1), abs(theta[2])])

    starts = [np.array([1.0])] if q == 1 else [np.array([1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.1])]
    best = None
    for k, start in enumerate(starts):
        # Unbounded: lme4's bound (a diagonal of Lambda >= 0) is a point where the deviance, even in
        # it, has a zero derivative, and a projected gradient method stops there when a step crosses
        # it; the sign is made canonical afterwards. The deviance per observation: the same minimum,
        # with gradients of order 1 at any size.
        res = optimize.minimize(lambda th: tuple(x / n for x in deviance_and_gradient(th)), start, jac=True,
                                method="L-BFGS-B", options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10})
        res.fun = res.fun * n
        if not res.success:
            # If L-BFGS-B's line search still stops early ("ABNORMAL_TERMINATION_IN_LNSRCH"), polish
            # with Nelder-Mead from where it stopped.
            polish = optimize.minimize(deviance, res.x, method="Nelder-Mead",
                                       options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 4000})
            if polish.fun <= res.fun + 1e-9:
                res = polish
        res.x = canonical(res.x)
        if best is None or res.fun < best.fun - 1e-9:
            best = res
        on_bound = q == 2 and min(best.x[0], best.x[2]) < 1e-6
        if k == 0 and best.success and not on_bound:
            break  # a second start only when the first one struggled or stopped on a bound
    theta = best.x
    L = _lambda(theta, q)
    _, _, w, A, b, c = pieces(theta)
    beta = np.linalg.solve(A, b)
    rss = c - b @ beta
    sigma2 = float(rss / dof)
    cov_beta = sigma2 * np.linalg.inv(A)
    # BLUPs: b_g = L M_g^-1 L' Z_g'(y_g - X_g beta)
    r_g = Zty - np.einsum("gki,i->gk", ZtX, beta)
    if q == 1:
        blups = w[0][:, None] * r_g
    else:
        w00, w01, w11 = w
        blups = np.column_stack([w00 * r_g[:, 0] + w01 * r_g[:, 1], w01 * r_g[:, 0] + w11 * r_g[:, 1]])
    fitted = X @ beta + np.sum(Z * blups[g], axis=1)
    return FastFit(beta, cov_beta, sigma2, sigma2 * (L @ L.T), theta, float(best.fun), bool(best.success),
                   fitted, y - fitted, blups, str(best.message))
