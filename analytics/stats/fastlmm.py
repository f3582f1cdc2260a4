"""A fast, exact path for the mixed models of :mod:`analytics.stats.mixed`:

    y = X beta + Z_line b_line + Z_patient b_patient + e

with random effects by line (always) and, optionally, by patient, the lines nested in patients.
At each level the random effects are an intercept, or an intercept and a slope for weeks, with
an unstructured 1x1 or 2x2 covariance. This is lme4's
``y ~ X + (1 + weeks | patient_id) + (1 + weeks | patient_id:line_id)``.

It minimises the same profiled REML (or ML) deviance as lme4 (Bates et al., J Stat Softw 2015,
section 3): with relative covariance factors Lambda(theta) (lower triangular, per level),

    d(theta) = log|V| + log|X'V^-1 X| + (N - p) (1 + log(2 pi rss / (N - p)))   (REML)

where V = I + Z Lambda Lambda' Z' (relative to sigma^2) and rss = min_beta (y - X beta)' V^-1 (y - X beta).
V is block-diagonal per patient, and inside a patient it is the lines' blocks plus a rank-q
patient term, so V^-1 and log|V| follow from two applications of the Woodbury identity and the
matrix determinant lemma: first per line (the line's 1x1 or 2x2 block), then per patient on the
line-weighted sums. Everything is vectorised over lines and patients with numpy on their
sufficient statistics (Z'Z, Z'X, Z'y per line), so one deviance costs O(lines x p^2), not
O(observations). For the usual ``weeks * arm`` design, inside each arm X is a linear function of
[1, weeks], and the per-line statistics are held in a basis of two columns per arm (the "cell
basis", :func:`_cell_basis`): a line then touches three numbers (its arm's two columns and y)
instead of p + 1, and the per-line work no longer grows with p. The numbers are the same.

beta and sigma^2 are profiled out; theta (up to 3 numbers per level) is optimised by L-BFGS-B
with the exact gradient, in coordinates scaled by the Hessian at the start, from up to two starts
(three for a fit of more than 20,000 outermost groups: first the optimum of a fit on a fixed random
tenth of them), and reported with a non-negative diagonal of each Lambda. Singular fits are
flagged as lme4's ``isSingular`` does.

Small-sample inference: :meth:`LmmFit.df` gives Satterthwaite degrees of freedom for any
contrast of the fixed effects, computed as lmerTest does (Kuznetsova et al., J Stat Softw 2017):
the covariance of the variance parameters (theta, sigma) is twice the inverse Hessian of the
unprofiled deviance at the optimum (here: central differences of the exact gradient), and the
gradient of L' cov(beta) L in (theta, sigma) is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

__all__ = ["LmmFit", "fit_lmm"]

# Entries of a q x q lower-triangular Lambda that theta holds, column by column (lme4's order).
_TRI = {1: ((0, 0),), 2: ((0, 0), (1, 0), (1, 1))}
SINGULAR_TOL = 1e-4  # lme4's isSingular(tol = 1e-4): a diagonal element of Lambda below it


def _lam(theta: np.ndarray, q: int) -> np.ndarray:
    L = np.zeros((q, q))
    for t, (r, c) in zip(theta, _TRI[q]):
        L[r, c] = t
    return L


def _inv_logdet(M: list) -> tuple[list, np.ndarray]:
    """Inverse and log-determinant of a stack of 1x1 or 2x2 symmetric positive-definite matrices given
    by their entries (``M[i][j]``, one array per entry), in closed form."""
    if len(M) == 1:
        return [[1.0 / M[0][0]]], np.log(M[0][0])
    a, b, d = M[0][0], M[0][1], M[1][1]
    det = a * d - b * b
    off = -b / det
    return [[d / det, off], [off, a / det]], np.log(det)


# Stacks of tiny matrices (one per line or patient) are held entry by entry: ``M[i][j]`` is an array
# over the groups (for a q x (p + 1) block, ``M[i]`` is a (p + 1) x groups array), and constants
# (Lambda) are plain nested lists of floats. A product is then a handful of vectorised multiply-adds:
# numpy's batched matmul calls a kernel per 2x2 matrix, which made a deviance about 6 times slower.


def _mul(A: list, B: list, sym: bool = False) -> list:
    """A @ B for stacks held entry by entry (either may be constant); zero constants are skipped.
    ``sym``: the product is known to be symmetric (L'SL, L D^-1 L', S G S'), so only its lower
    triangle is computed and the upper one is the same arrays."""
    out = []
    for i, row in enumerate(A):
        new = []
        for j in range(len(B[0])):
            if sym and j > i:
                new.append(None)  # filled from the lower triangle below
                continue
            acc = None
            for k, a in enumerate(row):
                b = B[k][j]
                if (isinstance(a, float) and a == 0.0) or (isinstance(b, float) and b == 0.0):
                    continue
                if acc is None:
                    acc = a * b  # a new array (or a float): the sums below add into it in place
                else:
                    acc += a * b
            new.append(0.0 if acc is None else acc)
        out.append(new)
    if sym:
        for i, row in enumerate(out):
            for j in range(i + 1, len(row)):
                row[j] = out[j][i]
    return out


def _sums(M: list, n: int) -> np.ndarray:
    """The sums over the groups of a stack held entry by entry (a constant counts n times)."""
    return np.array([[float(np.sum(x)) * (1 if isinstance(x, np.ndarray) else n) for x in row] for row in M])


def _sum_of_mul(A: list, B: list, n: int) -> np.ndarray:
    """The sums over the groups of A @ B, as dot products: the product itself is never formed."""
    def dot(a, b):
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            return float(np.dot(a, b))
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return float(np.sum(a * b))
        return a * b * n

    return np.array([[sum(dot(a, B[k][j]) for k, a in enumerate(row)) for j in range(len(B[0]))] for row in A])


def _t(A: list) -> list:
    return [list(col) for col in zip(*A)]


def _rows(M: list, R: list, out: list | None = None, scratch: np.ndarray | None = None) -> list:
    """M @ R for a stack of q x r matrices M (entry arrays over groups) and a stack of r x m blocks R
    (``R[k]``: m x groups, each of the m rows contiguous): row i is sum_k M[i][k] R[k]. ``out``: arrays
    to write the rows into (a workspace reused between deviances: at 100,000 patients a fresh block
    costs more in page faults than the arithmetic); ``scratch``: one more, shaped like a block of R."""
    result = []
    for i, row in enumerate(M):
        acc = None
        for k, m in enumerate(row):
            if acc is None:
                acc = np.multiply(m, R[k], out=out[i]) if out is not None else m * R[k]
            else:
                if scratch is None:
                    scratch = np.empty_like(acc)
                np.multiply(m, R[k], out=scratch)
                acc += scratch
        result.append(acc)
    return result


def _const(L: np.ndarray) -> list:
    return [[float(x) for x in row] for row in L]


@dataclass
class LmmFit:
    """A fitted model. ``levels``: the grouping levels with random effects, innermost first
    (("line",) or ("line", "patient")); ``q``: per level, 1 (intercept) or 2 (intercept and slope)."""

    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    theta: dict  # level -> theta (Lambda's lower triangle, column by column)
    cov_re: dict  # level -> q x q covariance of the random effects
    q: dict
    n_groups: dict
    deviance: float
    converged: bool
    fitted: np.ndarray  # conditional fitted values X beta + Z b, in the caller's row order
    resid: np.ndarray
    blups: dict  # level -> groups x q
    reml: bool
    message: str = ""
    vcov_varpar: np.ndarray | None = field(default=None, repr=False)  # (theta..., sigma)
    jacobian: list = field(default_factory=list, repr=False)  # d cov(beta) / d varpar, p x p each
    hessian_note: str = ""
    names: list = field(default_factory=list)  # the fixed effects' names, set by the caller
    engine: str = ""
    _design: object = field(default=None, repr=False)
    _theta_all: np.ndarray | None = field(default=None, repr=False)

    def with_satterthwaite(self) -> "LmmFit":
        """Compute what :meth:`df` needs (once): the covariance of the variance parameters and the
        derivatives of cov(beta). Returns the fit."""
        if self.vcov_varpar is None and self._design is not None:
            design, theta = self._design, self._theta_all
            ev = design.evaluate(theta, level=2)
            sigma = float(np.sqrt(self.sigma2))
            self.vcov_varpar, self.hessian_note = _varpar_covariance(design, theta, ev, sigma)
            if self.vcov_varpar is not None:
                self.jacobian = design.dcov_dtheta(ev, self.sigma2) + [2 * sigma * np.linalg.inv(ev["A"])]
            self._design = None  # the per-line statistics are not needed any more (and are large)
        return self

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.q)

    def singular_levels(self) -> list[str]:
        """The levels whose Lambda has a diagonal element below lme4's tolerance: a variance at zero,
        or a correlation at +-1."""
        out = []
        for lev, th in self.theta.items():
            diag = [th[i] for i, (r, c) in enumerate(_TRI[self.q[lev]]) if r == c]
            if min(abs(x) for x in diag) < SINGULAR_TOL:
                out.append(lev)
        return out

    @property
    def singular(self) -> bool:
        return bool(self.singular_levels())

    def df(self, L: np.ndarray) -> float:
        """Satterthwaite degrees of freedom of the contrast L' beta (lmerTest's ``contest1D``):
        2 (L' C L)^2 / (g' A g), with C = cov(beta), g_k = L' dC/d varpar_k L and A the covariance
        of the variance parameters. inf when it cannot be computed."""
        if self.vcov_varpar is None:
            return float("inf")
        L = np.asarray(L, float)
        var = float(L @ self.cov_beta @ L)
        g = np.array([L @ J @ L for J in self.jacobian])
        denom = float(g @ self.vcov_varpar @ g)
        return float(2 * var**2 / denom) if denom > 0 else float("inf")


def _cell_basis(X: np.ndarray, w: np.ndarray, cells: np.ndarray) -> np.ndarray | None:
    """T with X = X~ T, where X~ has two columns per cell (1 and weeks, zero outside the cell): the
    fixed effects of the usual ``weeks * arm`` model with the arm as the cell. Inside a cell X is then
    a linear function of [1, weeks], found by least squares and checked to reproduce X; None when it
    does not (a covariate that varies within a cell), or when the cell basis would be more than twice
    as wide as X.

    In this basis a line touches only its own cell's two columns, so every per-line block of
    :class:`_Design` is 3 x lines (the cell's two columns and y) instead of (p + 1) x lines: the
    per-line work of a deviance no longer grows with the number of fixed effects."""
    n, p = X.shape
    n_cells = int(cells.max()) + 1 if n else 0
    if not n or 2 * n_cells + 1 > 2 * (p + 1):
        return None
    T = np.zeros((2 * n_cells, p))
    tol = 1e-9 * (1.0 + float(np.abs(X).max()) * (1.0 + float(np.abs(w).max())))
    for g in range(n_cells):
        rows = cells == g
        Zg = np.column_stack([np.ones(int(rows.sum())), w[rows]])
        Xg = X[rows]
        Tg = np.linalg.lstsq(Zg, Xg, rcond=None)[0]
        if np.abs(Xg - Zg @ Tg).max() > tol:
            return None
        T[2 * g:2 * g + 2] = Tg
    return T


class _Design:
    """Sufficient statistics per line, the lines sorted by patient, and the deviance, its gradient
    and the pieces of Satterthwaite's df as functions of theta."""

    def __init__(self, X, y, lines, patients, weeks, q_line: int, q_patient: int, reml: bool, cells=None):
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        n, p = X.shape
        self.n, self.p, self.reml = n, p, reml
        self.q1, self.q2 = q_line, q_patient
        line_codes = np.asarray(lines)
        pat_codes = np.zeros(n, int) if patients is None else np.asarray(patients)
        order = np.lexsort((line_codes, pat_codes))
        self.order = order
        lc, pc = line_codes[order], pat_codes[order]
        start = np.r_[True, (lc[1:] != lc[:-1]) | (pc[1:] != pc[:-1])]
        self.obs_line = np.cumsum(start) - 1  # per sorted observation: its line's row
        starts = np.flatnonzero(start)
        J = len(starts)
        line_pat = pc[starts]
        if patients is not None and len(np.unique(lc[starts])) < J:
            raise ValueError("a line_id occurs in more than one patient: lines must be nested in patients")
        pstart = np.r_[True, line_pat[1:] != line_pat[:-1]]
        self.line_patient = np.cumsum(pstart) - 1
        self.pstarts = np.flatnonzero(pstart)
        self.n_lines, self.n_patients = J, len(self.pstarts)
        w_caller = np.zeros(n) if weeks is None else np.asarray(weeks, float)
        w = w_caller[order]
        self.Z = np.column_stack([np.ones(n), w])  # both levels use columns of [1, weeks]
        # Per line, entry by entry: S = Z'Z (2 x 2, on the [1, weeks] basis) and R = Z'[X y] (row k of Z':
        # (p + 1) x J, one contiguous row per column of [X y], so sums over a patient's lines are bincounts).
        s01 = np.add.reduceat(w, starts)
        self.S = [[np.diff(np.r_[starts, n]).astype(float), s01], [s01, np.add.reduceat(w * w, starts)]]
        self.T = None
        if cells is not None:
            cell_codes = np.unique(np.asarray(cells), return_inverse=True)[1].ravel()
            self.T = _cell_basis(X, w_caller, cell_codes)
        if self.T is not None:
            cell_of = cell_codes[order]
            cell_line = cell_of[starts]
            if np.any(cell_of != cell_line[self.obs_line]):
                self.T = None  # a line with observations in two cells: the plain path
        if self.T is None:
            Xy = np.column_stack([X[order], y[order]])
            self.R = [np.ascontiguousarray(np.add.reduceat(Xy, starts, axis=0).T),
                      np.ascontiguousarray(np.add.reduceat(w[:, None] * Xy, starts, axis=0).T)]
            self.XyXy = Xy.T @ Xy
            del Xy
        else:
            self._cells(cell_line, y[order], w, starts)
        self._work: dict = {}
        # The caller's X, not a sorted copy (tens of MB at 100,000 patients, held through the whole
        # search): it is sorted again for the fitted values, once the work arrays are let go.
        self.X = X
        self.dof = n - p if reml else n
        self.n_theta1 = len(_TRI[q_line])
        self.n_theta = self.n_theta1 + (len(_TRI[q_patient]) if q_patient else 0)

    def _cells(self, cell_line: np.ndarray, y: np.ndarray, w: np.ndarray, starts: np.ndarray) -> None:
        """Set up the cell basis (see :func:`_cell_basis`): the lines reordered by cell (each cell's lines
        a contiguous slice), R per line held compressed as the 3 x J block (Z_k'1, Z_k'w, Z_k'y) of its
        cell's two columns and y, and [X~ y]'[X~ y] in the cell basis."""
        perm = np.argsort(cell_line, kind="stable")
        cell_line = cell_line[perm]
        self.S = [[x[perm] for x in row] for row in self.S]
        self.line_patient = self.line_patient[perm]
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(len(perm))
        self.obs_line = inverse[self.obs_line]
        ry = [np.add.reduceat(y, starts)[perm], np.add.reduceat(w * y, starts)[perm]]
        self.R = [np.ascontiguousarray(np.vstack([self.S[k][0], self.S[k][1], ry[k]])) for k in range(2)]
        n_cells = self.T.shape[0] // 2
        self.c = c = 2 * n_cells
        bounds = np.searchsorted(cell_line, np.arange(n_cells + 1))
        self.cell_lines = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]  # per cell: its lines
        self.cell_rows = [2 * cell_line, 2 * cell_line + 1]  # per line: its cell's two rows in the basis
        XyXy = np.zeros((c + 1, c + 1))
        for g, sl in enumerate(self.cell_lines):
            block = self.R[0][:, sl].sum(axis=1), self.R[1][:, sl].sum(axis=1)
            XyXy[2 * g:2 * g + 2, 2 * g:2 * g + 2] = [block[0][:2], block[1][:2]]
            XyXy[2 * g:2 * g + 2, c] = XyXy[c, 2 * g:2 * g + 2] = block[0][2], block[1][2]
        XyXy[c, c] = y @ y
        self.XyXy = XyXy
        self.Taug = np.zeros((c + 1, self.p + 1))
        self.Taug[:c, :self.p] = self.T
        self.Taug[c, self.p] = 1.0

    def _outer(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        """sum over lines of U_l V_l' for two per-line blocks: U V' (in the cell basis: per cell, the 3 x 3
        product of its slices, placed at its two rows and y's)."""
        if self.T is None:
            return U @ V.T
        c = self.c
        out = np.zeros((c + 1, c + 1))
        for g, sl in enumerate(self.cell_lines):
            ix = np.array([2 * g, 2 * g + 1, c])
            out[np.ix_(ix, ix)] += U[:, sl] @ V[:, sl].T
        return out

    def _expand(self, U: np.ndarray) -> np.ndarray:
        """A compressed per-line block as the (c + 1) x J block of the cell basis."""
        out = np.zeros((self.c + 1, U.shape[1]))
        for g, sl in enumerate(self.cell_lines):
            out[2 * g:2 * g + 2, sl] = U[:2, sl]
        out[self.c] = U[2]
        return out

    def _cell_dot(self, vec: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Per line, vec (cell basis) dotted with a compressed block's column."""
        out = vec[self.c] * U[2]
        for g, sl in enumerate(self.cell_lines):
            out[sl] += vec[2 * g] * U[0, sl] + vec[2 * g + 1] * U[1, sl]
        return out

    def _cell_gram(self, Ab: np.ndarray, U: np.ndarray, V: np.ndarray) -> float:
        """sum over lines of U_l' Ab V_l for compressed blocks, without their y row."""
        total = 0.0
        for g, sl in enumerate(self.cell_lines):
            total += float(np.sum(Ab[2 * g:2 * g + 2, 2 * g:2 * g + 2] * (U[:2, sl] @ V[:2, sl].T)))
        return total

    def _block_by_patient(self, U: np.ndarray) -> np.ndarray:
        """Sums over each patient's lines of a per-line block, as an m x patients block (in the cell
        basis, (c + 1) x patients)."""
        if self.T is None:
            return self._by_patient(U)
        lp, k, c = self.line_patient, self.n_patients, self.c
        out = np.empty((c + 1, k))
        for g, sl in enumerate(self.cell_lines):
            out[2 * g] = np.bincount(lp[sl], U[0, sl], minlength=k)
            out[2 * g + 1] = np.bincount(lp[sl], U[1, sl], minlength=k)
        out[c] = np.bincount(lp, U[2], minlength=k)
        return out

    def release(self) -> None:
        """Let go of the observation-level arrays and the work arrays once the fit is done: the
        deviance and its derivatives (Satterthwaite's df, later) need only the per-line statistics.
        At 100,000 patients these are hundreds of MB, and a fit kept as a fallback would hold them
        while the next model is fitted."""
        self.X = self.Z = self.order = self.obs_line = None
        self._work.clear()

    def _ws(self, name: str, rows: int, like: np.ndarray) -> list[np.ndarray]:
        """``rows`` work arrays shaped like ``like``, kept between deviances (never returned to callers)."""
        key = (name, rows, like.shape)
        if key not in self._work:
            self._work[key] = [np.empty_like(like) for _ in range(rows)]
        return self._work[key]

    def _forget(self, name: str, rows: int, like: np.ndarray) -> None:
        """Hand the work arrays ``name`` over to the caller: the next evaluation makes new ones."""
        self._work.pop((name, rows, like.shape), None)

    def _by_patient(self, x: np.ndarray) -> np.ndarray:
        """Sums over each patient's lines of a per-line array (J,) or of each row of an m x J block."""
        lp, k = self.line_patient, self.n_patients
        if x.ndim == 1:
            return np.bincount(lp, x, minlength=k)
        return np.stack([np.bincount(lp, row, minlength=k) for row in x])

    def split(self, theta):
        L1 = _lam(theta[: self.n_theta1], self.q1)
        L2 = _lam(theta[self.n_theta1:], self.q2) if self.q2 else None
        return L1, L2

    def evaluate(self, theta: np.ndarray, level: int = 0, keep: bool = True) -> dict:
        """level 0: deviance (and beta, rss, A); 1 and 2: also, per level of random effects, the
        per-group B = Z'V^-1 [X y] and the sum of Z'V^-1 Z that the gradient, d cov(beta) and the
        BLUPs need. [X y] is carried as one matrix (y its last column), and the line-level weighted
        statistics are computed once for the whole [1, weeks] basis, of which each level's Z is a slice.
        Per-group matrices are held entry by entry (see :func:`_mul`). In the cell basis the lines' B
        is formed at level 2 only (for :meth:`dcov_dtheta`): the gradient and the BLUPs need only the
        forms computed from the compressed blocks (its "B" is None at level 1). ``keep=False``: the
        result is used before the next evaluation (the optimiser's gradient), so its blocks may be
        work arrays."""
        q1, q2, p = self.q1, self.q2, self.p
        L1, L2 = self.split(theta)
        l1 = _const(L1)
        S, R = self.S, self.R  # 2 x 2 entries over lines; 2 blocks of (p + 1) x J
        S_1 = [row[:q1] for row in S]  # 2 x q1
        D = _mul(_mul(_t(l1), S_1[:q1]), l1, sym=True)
        for i in range(q1):
            D[i][i] = D[i][i] + 1.0
        Dinv, logdet = _inv_logdet(D)
        G = _mul(_mul(l1, Dinv), _t(l1), sym=True)  # per line: Lambda D^-1 Lambda'
        GZ = _rows(G, R[:q1], self._ws("GZ", q1, R[0]), self._ws("scratch", 1, R[0])[0])
        Aug = self.XyXy - sum(self._outer(R[i], GZ[i]) for i in range(q1))
        total_logdet = float(np.sum(logdet))
        # Z'W Z and Z'W [X y] on the [1, weeks] basis, W = blockdiag(V_line^-1)
        SGS = _mul(_mul(S_1, G), S[:q1], sym=True)  # S_1 G S_1'
        e01 = S[0][1] - SGS[0][1]
        E = [[S[0][0] - SGS[0][0], e01], [e01, S[1][1] - SGS[1][1]]]
        SGZ = _rows(S_1, GZ, self._ws("SGZ", 2, R[0]), self._ws("scratch", 1, R[0])[0])
        # In place (no fresh block per deviance: at 100,000 patients that is 40 MB of page faults). When
        # the caller keeps what it returns (the per-group B) past the next evaluation, the work arrays
        # holding it are handed over (forgotten here) instead of copied: the final evaluation of a fit
        # then needs no more memory than the optimiser's. With a patient level, B of the lines is
        # computed into FHB below, and these stay work arrays.
        Bx = [np.subtract(R[i], SGZ[i], out=SGZ[i]) for i in range(2)]
        if level and keep and not q2:
            self._forget("SGZ", 2, R[0])
        if q2:
            l2 = _const(L2)
            a01 = self._by_patient(E[0][1]) if q2 == 2 else None
            A2p = [[self._by_patient(E[i][j]) if i == j else a01 for j in range(q2)] for i in range(q2)]
            B2p = [self._block_by_patient(Bx[i]) for i in range(q2)]
            C = _mul(_mul(_t(l2), A2p), l2, sym=True)
            for i in range(q2):
                C[i][i] = C[i][i] + 1.0
            Cinv, logdetC = _inv_logdet(C)
            H = _mul(_mul(l2, Cinv), _t(l2), sym=True)
            HB = _rows(H, B2p, self._ws("HB", q2, B2p[0]), self._ws("scratch", 1, B2p[0])[0])
            Aug = Aug - sum(B2p[i] @ HB[i].T for i in range(q2))
            total_logdet += float(np.sum(logdetC))
        if self.T is not None:
            Aug = self.Taug.T @ Aug @ self.Taug
        A, b, c = Aug[:p, :p], Aug[:p, p], Aug[p, p]
        sign_a, logdet_a = np.linalg.slogdet(A)
        if sign_a <= 0 or not np.isfinite(total_logdet):
            return {"dev": 1e300}
        beta = np.linalg.solve(A, b)
        rss = c - b @ beta
        if not rss > 0:
            return {"dev": 1e300}
        dof = self.dof
        dev = total_logdet + dof * (1 + np.log(2 * np.pi * rss / dof)) + (logdet_a if self.reml else 0.0)
        out = {"dev": float(dev), "beta": beta, "rss": float(rss), "A": A}
        if level == 0:
            return out
        # Per group of each level: B = Z'V^-1 [X y] (so a = Z'V^-1 (y - X beta) = B v, v = (-beta, 1))
        # and the sum over groups of P = Z'V^-1 Z.
        v = np.append(-beta, 1.0)
        Ainv = np.linalg.inv(A)
        cells = self.T is not None
        if cells:  # v and A^-1 in the cell basis: v'B = (Taug v)'B~, B'A^-1 B = B~' T A^-1 T' B~
            v, Ainv = self.Taug @ v, self.T @ Ainv @ self.T.T
        E1, B1 = [row[:q1] for row in E[:q1]], Bx[:q1]
        lines: dict = {}
        if q2:
            lp = self.line_patient
            F = [row[:q2] for row in E[:q1]]  # q1 x q2
            FH = _mul(F, [[h[lp] if isinstance(h, np.ndarray) else h for h in row] for row in H])
            P1 = _sums(E1, self.n_lines) - _sum_of_mul(FH, _t(F), self.n_lines)
            if cells:
                lines = self._nested_line_forms(Bx[:q1], FH, B2p, v, Ainv, keep and level >= 2)
                B1 = lines.pop("B")
            else:
                gathered = [np.take(bb, lp, axis=1, out=w) for bb, w in zip(B2p, self._ws("B2p_lines", q2, R[0]))]
                FHB = _rows(FH, gathered, self._ws("FHB", q1, R[0]), self._ws("scratch", 1, R[0])[0])
                B1 = [np.subtract(B1[i], FHB[i], out=FHB[i]) for i in range(q1)]
                if keep:
                    self._forget("FHB", q1, R[0])
            P2 = _sums(A2p, self.n_patients) - _sum_of_mul(_mul(A2p, H), A2p, self.n_patients)
            AHB = _rows(A2p, HB, self._ws("AHB", q2, B2p[0]), self._ws("scratch", 1, B2p[0])[0])
            Bv2 = [B2p[i] - AHB[i] for i in range(q2)]
            groups = [(P1, B1, L1), (P2, Bv2, L2)]
        else:
            if cells:
                lines = {"a": np.column_stack([self._cell_dot(v, bb) for bb in B1]),
                         "K": np.array([[self._cell_gram(Ainv, bi, bj) for bj in B1] for bi in B1])}
                B1 = [self._expand(bb) for bb in B1] if keep and level >= 2 else None
            groups = [(_sums(E1, self.n_lines), B1, L1)]
        out["levels"] = []
        for k, (P, B, L) in enumerate(groups):
            s = {"P": P, "B": B, "L": L, "Ainv": Ainv}
            if k == 0 and lines:  # the lines' forms, computed on the compressed blocks (cell basis)
                s["a"], s["K"] = lines["a"], lines["K"]
            else:
                s["a"] = np.column_stack([v @ bb for bb in B])
            out["levels"].append(s)
        return out

    def _nested_line_forms(self, Bx: list, FH: list, B2p: list, v: np.ndarray, Ab: np.ndarray, keep: bool) -> dict:
        """The lines' ``a`` and ``K`` (see :meth:`_forms`) with a patient level, in the cell basis, without
        forming the lines' blocks B_il = x_il - sum_m FH_l[i][m] B2p_m[:, k(l)] ((c + 1) x lines each; x_il
        is line l's compressed block i, k(l) its patient):

            a_l[i] = v'x_il - sum_m FH_l[i][m] (v'B2p_m)[k(l)]
            K_ij = sum_l x_il' Ab x_jl - T_ij - T_ji + U_ij,  with Q_m = Ab B2p_m,
            T_ij = sum_m sum_l FH_l[j][m] x_il' Q_m[:, k(l)],
            U_ij = sum_m,n sum_l FH_l[i][m] FH_l[j][n] B2p_m[:, k(l)]' Q_n[:, k(l)]

        (the y rows left out of K, as :meth:`_forms` does). Each term is a handful of passes over
        arrays of one number per line. ``keep``: also the blocks themselves, for :meth:`dcov_dtheta`."""
        q1, q2, c, lp, J = self.q1, self.q2, self.c, self.line_patient, self.n_lines
        FH = [[np.broadcast_to(x, (J,)) for x in row] for row in FH]
        vB = [(v @ bb)[lp] for bb in B2p]
        a = np.column_stack([self._cell_dot(v, Bx[i]) - sum(FH[i][m] * vB[m] for m in range(q2)) for i in range(q1)])
        Q = [Ab @ bb[:c] for bb in B2p]
        QL = [[q[rows, lp] for rows in self.cell_rows] for q in Q]  # per line: its cell's rows of Q_m, its patient
        BQ = [[np.einsum("ij,ij->j", B2p[m][:c], Q[n])[lp] for n in range(q2)] for m in range(q2)]
        K = np.empty((q1, q1))
        T = np.empty((q1, q1))
        for i in range(q1):
            for j in range(q1):
                T[i, j] = sum(float(np.dot(FH[j][m] * QL[m][r], Bx[i][r])) for m in range(q2) for r in range(2))
                K[i, j] = self._cell_gram(Ab, Bx[i], Bx[j]) + sum(
                    float(np.dot(FH[i][m] * FH[j][n], BQ[m][n])) for m in range(q2) for n in range(q2))
        K -= T + T.T
        B = [self._expand(Bx[i]) - sum(FH[i][m] * B2p[m][:, lp] for m in range(q2)) for i in range(q1)] if keep else None
        return {"a": a, "K": K, "B": B}

    @staticmethod
    def _forms(s: dict):
        """sum_g a_g a_g' and sum_g B_g A^-1 B_g' (B without its y column) of one level (the second
        computed by the evaluation, for the lines in the cell basis)."""
        a, B = s["a"], s["B"]
        aa = a.T @ a
        if "K" in s:
            return aa, s["K"]
        Ainv = s["Ainv"]
        p = Ainv.shape[0]
        # sum_g B_i[:, g]' A^-1 B_j[:, g] = sum(A^-1 * (B_i B_j')): one p x p product over the groups
        # (a BLAS call reading each block once) instead of A^-1 B, a block as large as B, per entry.
        X = [bb[:p] for bb in B]  # rows of C-ordered blocks: views, the y row left out
        q = len(X)
        K = np.empty((q, q))
        for i in range(q):
            for j in range(i + 1):
                K[i, j] = K[j, i] = float(np.sum(Ainv * (X[i] @ X[j].T)))
        return aa, K

    def gradient_parts(self, ev: dict) -> tuple[np.ndarray, np.ndarray]:
        """d(log|V| + log|A|)/d theta (log|A| only under REML) and d rss / d theta, from the per-level
        sums: d log|V| = 2 tr(Lambda' P dLambda); d rss = -2 a' dLambda Lambda' a; d log|A| =
        -2 tr(A^-1 B' dLambda Lambda' B)."""
        g_ld, g_rss = [], []
        for s, q in zip(ev["levels"], (self.q1, self.q2)):
            aa, K = self._forms(s)
            L = s["L"]
            M_ld = 2 * L.T @ (s["P"] - (K if self.reml else 0.0))
            M_rss = -2 * L.T @ aa
            for r, cidx in _TRI[q]:
                g_ld.append(M_ld[cidx, r])
                g_rss.append(M_rss[cidx, r])
        return np.array(g_ld), np.array(g_rss)

    def deviance_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        ev = self.evaluate(theta, level=1, keep=False)
        if ev["dev"] >= 1e300:
            return 1e300, np.zeros_like(theta)
        g_ld, g_rss = self.gradient_parts(ev)
        return ev["dev"], g_ld + self.dof / ev["rss"] * g_rss

    def dcov_dtheta(self, ev: dict, sigma2: float) -> list[np.ndarray]:
        """d cov(beta) / d theta_k = sigma^2 A^-1 (S_k + S_k') A^-1, S_k = sum_g B_g' e_r e_c' Lambda' B_g."""
        Ainv = np.linalg.inv(ev["A"])
        p = self.p if self.T is None else self.c
        out = []
        for s, q in zip(ev["levels"], (self.q1, self.q2)):
            B = s["B"]
            LB = _rows(_t(_const(s["L"])), B)  # Lambda' B per group
            for r, cidx in _TRI[q]:
                S = (B[r] @ LB[cidx].T)[:p, :p]
                if self.T is not None:  # from the cell basis
                    S = self.T.T @ S @ self.T
                out.append(sigma2 * Ainv @ (S + S.T) @ Ainv)
        return out


def _canonical(theta: np.ndarray, design: _Design) -> np.ndarray:
    """The same Lambda Lambda' per level with a non-negative diagonal (the deviance does not change
    with the sign of a column of Lambda)."""
    theta = np.asarray(theta, float).copy()
    k = 0
    for q in (design.q1, design.q2):
        if not q:
            continue
        if q == 1:
            theta[k] = abs(theta[k])
        else:
            a, c, d = theta[k:k + 3]
            theta[k:k + 3] = [abs(a), c * np.sign(a or 1), abs(d)]
        k += len(_TRI[q])
    return theta


def _optimise(design: _Design, start: np.ndarray | None = None):
    n = design.n
    one = {1: [1.0], 2: [1.0, 0.0, 1.0]}
    small = {1: [0.3], 2: [0.3, 0.0, 0.05]}
    qs = [q for q in (design.q1, design.q2) if q]
    starts = [np.concatenate([one[q] for q in qs]), np.concatenate([small[q] for q in qs])]
    if start is not None:
        starts.insert(0, np.asarray(start, float))

    def scaled(th):
        dev, grad = design.deviance_and_gradient(th)
        return dev / n, grad / n

    def deviance(th):
        return design.evaluate(th)["dev"]

    best = None
    for start in starts:
        # Unbounded: lme4's bound (a diagonal of Lambda >= 0) is a point where the deviance has a zero
        # derivative, and a projected-gradient method stops there when a step crosses it; the signs are
        # made canonical afterwards. The deviance per observation: gradients of order 1 at any size.
        res = _preconditioned_lbfgs(scaled, np.asarray(start, float))
        res.fun = res.fun * n
        if not res.success and np.max(np.abs(res.jac)) < 1e-6:
            # L-BFGS-B's line search often stops ("ABNORMAL_TERMINATION_IN_LNSRCH") at the optimum, when
            # the deviance no longer changes in its last digits: the gradient per observation says so.
            res.success = True
        elif not res.success:
            # Otherwise polish with Nelder-Mead from where it stopped.
            polish = optimize.minimize(deviance, res.x, method="Nelder-Mead",
                                       options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 8000})
            if polish.fun <= res.fun + 1e-9:
                res = polish
        canonical = _canonical(res.x, design)
        if "metric" in res:  # the deviance is even in the flipped elements: its Hessian is D H D there
            res.metric = np.where(np.sign(canonical) * np.sign(res.x) < 0, -1.0, 1.0)[:, None] * res.metric
        res.x = canonical
        if best is None or res.fun < best.fun - 1e-9:
            best = res
        if best.success:
            break  # a second start only when the first struggled
    diag = _diagonal(design)
    if np.any(np.abs(best.x[diag]) < SINGULAR_TOL):
        # At a boundary the deviance is flat along the vanishing diagonal element (it is even in it), so
        # the unbounded search creeps towards it; finish with lme4's bounds (diagonals >= 0), from the
        # canonical point with that element at zero.
        x0 = best.x.copy()
        x0[diag[np.abs(x0[diag]) < SINGULAR_TOL]] = 0.0
        bounds = [(0.0, None) if i in set(diag.tolist()) else (None, None) for i in range(len(x0))]
        metric = best.get("metric")  # the search's preconditioner, when it had one
        res = (_lbfgs(scaled, x0, metric, bounds) if metric is not None else
               optimize.minimize(scaled, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS))
        res.fun = res.fun * n
        if res.fun < best.fun:
            res.success = res.success or bool(np.max(np.abs(res.jac)) < 1e-6)
            best = res
    return best


def _step(x: float) -> float:
    """The finite-difference step for an element of theta in a Hessian (the search's start, and the
    variance parameters' covariance): relative, with a floor for elements near zero."""
    return 1e-4 * max(abs(x), 1e-2)


def _hessian(f, x: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """The symmetrised Hessian of ``f`` at ``x`` (gradient ``g``) by forward differences of the
    exact gradient (len(x) evaluations); None where it is not finite."""
    k = len(x)
    H = np.empty((k, k))
    for i in range(k):
        h = _step(x[i])
        e = np.zeros(k)
        e[i] = h
        H[i] = (f(x + e)[1] - g) / h
    H = (H + H.T) / 2
    return H if np.all(np.isfinite(H)) else None


_FLAT = 1e-14  # relative: two deviances closer than this differ by rounding only


class _Flat(Exception):
    """Raised inside the search when it has converged but L-BFGS-B's line search would go on."""


_OPTIONS = {"maxiter": 3000, "ftol": 1e-13, "gtol": 1e-10}


def _lbfgs(f, x0: np.ndarray, metric: np.ndarray | None = None, bounds=None):
    """L-BFGS-B on ``f`` (value and gradient) from ``x0``, stopped where the function is flat to its
    rounding: at the first step whose value is within ``_FLAT`` (relative) of the best seen, when the
    best point's gradient predicts less decrease than ``ftol`` allows. The decrease left is the
    Newton decrement |M' g|^2 / 2, with M M' an approximate inverse Hessian (``metric``; None: the
    identity, for coordinates in which the Hessian is about that), and with the components of g
    that push against a lower bound left out. At the optimum of a large fit the deviance no longer
    changes in its last digits, and L-BFGS-B's line search spent up to 29 evaluations there (at
    100,000 patients) before it gave up."""
    lower = None if bounds is None else np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    best = {"x": np.asarray(x0, float), "f": np.inf, "g": None, "left": np.inf, "n": 0}

    def guarded(x):
        value, grad = f(x)
        best["n"] += 1
        flat = bool(np.isfinite(best["f"])) and abs(value - best["f"]) <= _FLAT * abs(best["f"])  # not at the start
        if value < best["f"]:
            g = grad if lower is None else np.where((x <= lower) & (grad > 0), 0.0, grad)
            g = g if metric is None else metric.T @ g
            best.update(x=np.array(x, float), f=value, g=grad, left=0.5 * float(g @ g))
        if flat and best["left"] < _OPTIONS["ftol"] * max(abs(best["f"]), 1.0):
            raise _Flat
        return value, grad

    try:
        return optimize.minimize(guarded, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS)
    except _Flat:
        return optimize.OptimizeResult(x=best["x"], fun=best["f"], jac=best["g"], success=True, nfev=best["n"],
                                       message="converged: a step changed the value by less than its rounding, "
                                               "where the gradient predicts less than ftol more decrease")


def _preconditioned_lbfgs(f, start: np.ndarray):
    """Minimise ``f`` (value and gradient) with L-BFGS-B from ``start``, in coordinates z with
    theta = x0 + C z, where C C' is the inverse of the Hessian at the start x0 (forward differences
    of the exact gradient: len(theta) more evaluations), its eigenvalues taken in absolute value and
    floored, so that C is defined where the deviance is not convex. The scales of the elements of
    theta differ by orders of magnitude (a slope's against an intercept's), and L-BFGS-B, which
    starts from the identity, spent most of its evaluations learning them: at 100,000 patients the
    default model's two searches took 35 + 35 evaluations, and 31 + 20 preconditioned (the
    Hessian's included). The optimum is the same (the same function, the same tolerances); the
    result is in theta, with ``jac`` the gradient in theta. Plain L-BFGS-B when no Hessian can be
    measured.

    At the optimum of a large fit the deviance is flat to its rounding, and L-BFGS-B's line search
    could spend tens of evaluations there (at 100,000 patients, 29 of one search's 36) before it
    gave up. The search stops there as :func:`_lbfgs` says (in z the Hessian is about the identity,
    so the decrease left is about |g|^2 / 2). ``metric`` on the result: C, for a search that goes on
    from it in theta."""
    x0 = start
    f0, g0 = f(x0)
    H = _hessian(f, x0, g0) if np.isfinite(f0) and f0 < 1e299 and np.all(np.isfinite(g0)) else None
    if H is None or not np.any(H):
        return optimize.minimize(f, x0, jac=True, method="L-BFGS-B", options=_OPTIONS)
    vals, vecs = np.linalg.eigh(H)
    vals = np.abs(vals)
    root = np.sqrt(np.maximum(vals, 1e-3 * vals.max()))
    C = vecs / root  # C' g = root^-1 V' g, so g = V (root * (C' g))

    def in_z(z):
        if not np.any(z):  # the start, measured above
            return f0, C.T @ g0
        value, grad = f(x0 + C @ z)
        return value, C.T @ grad

    res = _lbfgs(in_z, np.zeros(len(x0)))
    res.x = x0 + C @ res.x
    res.jac = vecs @ (root * res.jac)  # the gradient in theta
    res.metric = C
    return res


def _diagonal(design: _Design) -> np.ndarray:
    """Positions in theta of the diagonal elements of each level's Lambda."""
    out, k = [], 0
    for q in (design.q1, design.q2):
        if q:
            out += [k + i for i, (r, c) in enumerate(_TRI[q]) if r == c]
            k += len(_TRI[q])
    return np.array(out, int)


def _varpar_covariance(design: _Design, theta: np.ndarray, ev: dict, sigma: float) -> tuple[np.ndarray | None, str]:
    """2 x the Moore-Penrose inverse of the Hessian of lmerTest's deviance in varpar = (theta, sigma):
    dev(theta, sigma) = log|V| + [REML] log|A| + rss / sigma^2 + dof log(2 pi sigma^2), with the theta
    block from central differences of the exact gradient. Negative or zero eigenvalues are reported as
    lmerTest does, and left out of the inverse."""
    k = len(theta)
    H = np.zeros((k + 1, k + 1))
    s2 = sigma**2
    for i in range(k):
        h = _step(theta[i])
        e = np.zeros(k)
        e[i] = h
        # one evaluation at a time, in the work arrays (keep=False): only its gradient is kept
        up = design.evaluate(theta + e, 1, keep=False)
        gu = design.gradient_parts(up) if up["dev"] < 1e300 else None
        dn = design.evaluate(theta - e, 1, keep=False)
        if gu is None or dn["dev"] >= 1e300:
            return None, "the Hessian of the deviance could not be evaluated"
        gd = design.gradient_parts(dn)
        H[i, :k] = ((gu[0] - gd[0]) + (gu[1] - gd[1]) / s2) / (2 * h)
    H[:k, :k] = (H[:k, :k] + H[:k, :k].T) / 2
    _, g_rss = design.gradient_parts(ev)
    H[:k, k] = H[k, :k] = -2 * g_rss / sigma**3
    H[k, k] = 6 * ev["rss"] / sigma**4 - 2 * design.dof / s2
    vals, vecs = np.linalg.eigh(H)
    tol = 1e-8
    note = ""
    if np.any(vals < -tol):
        note = f"the deviance's Hessian has {int(np.sum(vals < -tol))} negative eigenvalue(s)"
    elif np.any(np.abs(vals) <= tol):
        note = f"the deviance's Hessian has {int(np.sum(np.abs(vals) <= tol))} eigenvalue(s) close to zero"
    pos = vals > tol
    inv = (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    return 2 * inv, note


SUBSAMPLE_ABOVE = 20_000  # outermost groups (patients, or lines without a patient level)
SUBSAMPLE_SHARE = 0.1
SUBSAMPLE_SEED = 20240229


def _subsample_start(X, y, lines, patients, weeks, q_line, q_patient, reml, cells=None) -> np.ndarray | None:
    """A start for a large fit: theta fitted on a random tenth of the outermost groups (patients,
    or lines; the same groups on every run), or None for a small design, or when the subsample
    cannot be fitted (a rare arm left out, say). The full fit then starts near its optimum: at
    100,000 patients the default model's first search took 31 evaluations from lme4's start and
    12 from the subsample's, which itself cost about two (0.14 s). The optimum is the full data's
    either way; lme4's start is still tried when the search from this one fails."""
    groups = np.asarray(patients if patients is not None else lines)
    if len(groups) <= SUBSAMPLE_ABOVE:
        return None
    uniques, codes = np.unique(groups, return_inverse=True)
    if len(uniques) <= SUBSAMPLE_ABOVE:
        return None
    rows = (np.random.default_rng(SUBSAMPLE_SEED).random(len(uniques)) < SUBSAMPLE_SHARE)[codes]
    try:
        with np.errstate(all="ignore"):
            sub = fit_lmm(X[rows], np.asarray(y)[rows], np.asarray(lines)[rows],
                          None if patients is None else groups[rows],
                          None if weeks is None else np.asarray(weeks)[rows], q_line, q_patient, reml,
                          satterthwaite=False, cells=None if cells is None else np.asarray(cells)[rows])
    except (ValueError, np.linalg.LinAlgError):
        return None
    theta = np.concatenate([sub.theta[lev] for lev in sub.levels])
    return theta if sub.converged and np.all(np.isfinite(theta)) else None


def fit_lmm(X: np.ndarray, y: np.ndarray, lines: np.ndarray, patients: np.ndarray | None = None,
            weeks: np.ndarray | None = None, q_line: int = 2, q_patient: int = 2, reml: bool = True,
            satterthwaite: bool = True, start: np.ndarray | None = None, cells: np.ndarray | None = None) -> LmmFit:
    """Fit the model. ``lines``: integer codes of the innermost groups; ``patients``: integer codes of
    the outer groups (None: random effects by line only); ``weeks``: the random-slope covariate
    (needed when a q is 2). ``q_line``/``q_patient``: 1 for a random intercept, 2 for an intercept and
    a slope. ``start``: a starting theta (the line level's, then the patient level's), tried before the
    default starts. ``cells``: a code per observation, constant within each line (the arm), inside
    which X is a linear function of [1, weeks] (``weeks * arm``): the deviance is then computed in the
    cell basis (:func:`_cell_basis`), the same numbers with less work per line; ignored, with the
    plain path, when X is not of that form. Raises ValueError when X is rank-deficient, has no fewer
    columns than rows, or the lines are not nested in patients."""
    X = np.asarray(X, float)
    n, p = X.shape
    if n <= p:  # REML's n - p (and sigma^2's) would be zero: nothing is left to estimate the variances
        raise ValueError(f"{n} observations for {p} fixed effects: no residual degrees of freedom")
    if np.linalg.matrix_rank(X) < p:
        raise ValueError("the fixed-effects design is rank-deficient (collinear covariates)")
    if patients is None:
        q_patient = 0
    if weeks is None and 2 in (q_line, q_patient):
        raise ValueError("a random slope needs the weeks column")
    if start is None:
        start = _subsample_start(X, y, lines, patients, weeks, q_line, q_patient, reml, cells)
    design = _Design(X, y, lines, patients, weeks, q_line, q_patient, reml, cells)
    best = _optimise(design, start)
    theta = best.x
    ev = design.evaluate(theta, level=1)  # the BLUPs need the per-group a only
    if ev["dev"] >= 1e300:
        raise ValueError("the REML criterion cannot be evaluated (no residual variation left: the data are fitted "
                         "exactly)")
    beta, rss = ev["beta"], ev["rss"]
    sigma2 = float(rss / design.dof)
    cov_beta = sigma2 * np.linalg.inv(ev["A"])
    L1, L2 = design.split(theta)
    names = ["line"] + (["patient"] if q_patient else [])
    Ls = [L1] + ([L2] if q_patient else [])
    # BLUPs: b = Lambda Lambda' Z'V^-1 (y - X beta) per group
    blups = {lev: s["a"] @ (L @ L.T) for lev, s, L in zip(names, ev["levels"], Ls)}  # a: groups x q
    Z = design.Z
    design._work.clear()  # before the sorted copy of X below: the kept blocks were handed over (evaluate)
    fit_sorted = design.X[design.order] @ beta + np.sum(Z[:, :q_line] * blups["line"][design.obs_line], axis=1)
    if q_patient:
        fit_sorted += np.sum(Z[:, :q_patient] * blups["patient"][design.line_patient[design.obs_line]], axis=1)
    fitted = np.empty(n)
    fitted[design.order] = fit_sorted
    del fit_sorted, Z
    design.release()  # what only the fit needed: a fit kept as a fallback then holds the per-line statistics
    k1 = design.n_theta1
    thetas = {"line": theta[:k1]} | ({"patient": theta[k1:]} if q_patient else {})
    fit = LmmFit(beta, cov_beta, sigma2, thetas, {lev: sigma2 * (L @ L.T) for lev, L in zip(names, Ls)},
                 {"line": q_line} | ({"patient": q_patient} if q_patient else {}),
                 {"line": design.n_lines} | ({"patient": design.n_patients} if q_patient else {}),
                 float(best.fun), bool(best.success), fitted, np.asarray(y, float) - fitted, blups, reml,
                 str(best.message))
    fit._design, fit._theta_all = design, theta
    if satterthwaite:
        fit.with_satterthwaite()
    return fit
