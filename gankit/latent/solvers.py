"""The solvers behind gankit.latent.boundaries: linear classifiers that separate latents by an
attribute, and the projection that conditions one normal on others.

Linear solvers (`fit_linear`), each returning (w [D] float64, b) for the decision x.w + b:
- 'svc': InterFaceGAN's reference, sklearn SVC(kernel='linear') on the raw latents, exactly;
- 'liblinear': sklearn LinearSVC (squared hinge) on centred latents;
- 'logistic': sklearn LogisticRegression (L-BFGS) on centred latents;
- 'newton': our finite Newton method for the L2-loss linear SVM (Keerthi & DeCoste, JMLR
  2005), in torch, intercept unregularised as in SVC: it does not crawl on the badly
  conditioned W / W+ where first-order solvers do.
'auto' (`resolve_solver`) picks the fastest at equal accuracy; benchmarks/bench_fit.py
measures them side by side (BENCHMARKS.md has the table).

Conditional normals (`conditional_normal`) use a rank-revealing projection, so near-collinear
conditions do not break it (InterFaceGAN's closed form solves with a singular C C^T there).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

# sklearn is imported inside the solvers that use it: its import takes seconds, and most
# importers of gankit.latent.boundaries (editing, the edit stage) never fit.

SOLVERS = ("auto", "newton", "liblinear", "logistic", "svc")
NEWTON_MAX_DIM = 2048      # 'auto' uses Newton up to this many dims (its Hessian is D x D)
NEWTON_MAX_WORK_Z = 2 ** 30  # ... and in Z up to this many n_train * D^2 (one Hessian build)
SMALL_WORK = 2 ** 28       # multiply-adds below which the Newton solver uses one CPU thread
MIN_RESIDUAL = 1e-3        # conditional_normal refuses primals closer than this to span(C)


def _column_mean(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    total = np.zeros(X.shape[1], dtype=np.float64)
    for s in range(0, len(X), chunk):
        total += X[s:s + chunk].sum(axis=0, dtype=np.float64)
    return total / len(X)


def solve_svc(X: np.ndarray, y: np.ndarray, C: float) -> tuple:
    """InterFaceGAN's reference: libsvm's dual, hinge loss, on the raw latents."""
    from sklearn.svm import SVC
    model = SVC(kernel="linear", C=C).fit(X, y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def solve_liblinear(X: np.ndarray, y: np.ndarray, C: float) -> tuple:
    """sklearn LinearSVC (squared hinge). It regularises the intercept like a weight, so the
    latents are centred first to make that intercept small; mapped back afterwards."""
    from sklearn.svm import LinearSVC
    mu = _column_mean(X)
    model = LinearSVC(C=C, dual="auto", max_iter=5000).fit(X - mu, y)
    w = model.coef_[0].astype(np.float64)
    return w, float(model.intercept_[0]) - float(w @ mu)


def solve_logistic(X: np.ndarray, y: np.ndarray, C: float) -> tuple:
    """sklearn LogisticRegression (L-BFGS, intercept unregularised), on centred latents: the
    logistic loss's normal, not a hinge loss's. Centring keeps the intercept small so L-BFGS
    is not slowed by a badly scaled coordinate."""
    from sklearn.linear_model import LogisticRegression
    mu = _column_mean(X)
    model = LogisticRegression(C=C, max_iter=1000).fit(X - mu, y)
    w = model.coef_[0].astype(np.float64)
    return w, float(model.intercept_[0]) - float(w @ mu)


def solve_newton(X: np.ndarray, y: np.ndarray, C: float, device: str = "cpu",
                  tol: float = 1e-6, max_iter: int = 100) -> tuple:
    """min_w,b 0.5 |w|^2 + C sum_i max(0, 1 - y_i (x_i.w + b))^2, b unregularised (as in SVC).

    Finite Newton: with A = the samples inside the margin, the generalised Hessian is
    diag(1,..,1,0) + 2C [X_A 1]^T [X_A 1]; an exact line search on the piecewise quadratic
    follows each step; the iteration ends when the active set is the optimum's (a few dozen
    steps at most). The Hessian is updated only for the rows that enter or leave A, so after the
    first step an iteration costs about two passes over X. X stays float32 (Hessian blocks on
    centred rows are computed in float32 and accumulated in float64). Runs on `device`; on a
    CPU shared with other busy processes, set torch.set_num_threads(1) (as Ray does in tasks):
    intra-op threads then stall on each other far more than they help."""
    sv = _NewtonSVM(X, y, C, device)
    return sv.run(tol, max_iter)


class _NewtonSVM:
    """State of the finite Newton iteration; rows are centred on mu for conditioning."""

    def __init__(self, X: np.ndarray, y: np.ndarray, C: float, device: str, chunk: int = 32768):
        self.X = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)
        self.y = torch.as_tensor(y, dtype=torch.float64, device=device)    # [n] +-1
        self.C, self.chunk, self.dim = float(C), chunk, X.shape[1]
        self.mu = torch.as_tensor(_column_mean(X), device=device)           # [D] float64
        self.w = torch.zeros(self.dim, dtype=torch.float64, device=device)  # in centred coords
        self.b = 0.0
        self.margin = torch.zeros_like(self.y)                               # y (xc.w + b)
        self.in_hessian = torch.zeros_like(self.y, dtype=torch.bool)        # rows summed in H
        self.H = torch.zeros(self.dim + 1, self.dim + 1, dtype=torch.float64, device=device)

    def matvec(self, v: torch.Tensor, c: float) -> torch.Tensor:
        """xc_i.v + c for every row: [n] float64."""
        v32, out = v.float(), []
        for s in range(0, len(self.X), self.chunk):
            out.append((self.X[s:s + self.chunk] @ v32).double())
        return torch.cat(out) - float(self.mu @ v) + c

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        """sum_i r_i xc_i: [D] float64."""
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.X.device)
        r32 = r.float()
        for s in range(0, len(self.X), self.chunk):
            total += (self.X[s:s + self.chunk].T @ r32[s:s + self.chunk]).double()
        return total - self.mu * float(r.sum())

    def gradient(self) -> torch.Tensor:
        """[dF/dw, dF/db]: [D + 1] float64."""
        coef = self.y * (1 - self.margin).clamp_min(0)            # y_i max(0, 1 - m_i)
        g_w = self.w - 2 * self.C * self.rmatvec(coef)
        g_b = -2 * self.C * coef.sum()
        return torch.cat([g_w, g_b.reshape(1)])

    def update_hessian(self) -> None:
        """Add the rows that entered the active set, subtract the ones that left.
        H = [[sum xc xc^T, sum xc], [sum xc^T, count]] over the active rows."""
        active = self.margin < 1
        changed = int((active != self.in_hessian).sum())
        with _cpu_threads(self.X.device, changed * self.dim ** 2):
            for sign, rows in ((1.0, active & ~self.in_hessian),
                               (-1.0, self.in_hessian & ~active)):
                idx = torch.nonzero(rows).flatten()
                for s in range(0, len(idx), self.chunk):
                    xc = self.X[idx[s:s + self.chunk]] - self.mu.float()        # [k, D]
                    self.H[:-1, :-1] += sign * (xc.T @ xc).double()
                    self.H[:-1, -1] += sign * xc.sum(dim=0, dtype=torch.float64)
                    self.H[-1, -1] += sign * len(xc)
            self.H[-1, :-1] = self.H[:-1, -1]
        self.in_hessian = active

    def newton_direction(self, g: torch.Tensor) -> torch.Tensor:
        with _cpu_threads(g.device, self.dim ** 3):
            reg = torch.ones(self.dim + 1, dtype=torch.float64, device=g.device)
            reg[-1] = 1e-10  # keeps H invertible when no sample is active (b is unregularised)
            return -torch.linalg.solve(2 * self.C * self.H + torch.diag(reg), g)

    def line_search(self, d: torch.Tensor, q: torch.Tensor, g_dot_d: float) -> float:
        """Exact minimiser t of F(w + t d) along d, with q_i = y_i (xc_i.d_w + d_b).
        F' along the line is piecewise linear and increasing: Newton on it, kept inside a
        bracket [lo, hi] by bisection."""
        dw_sq, w_dw, q_sq = float(d[:-1] @ d[:-1]), float(self.w @ d[:-1]), q * q

        def slope(t):  # (F'(t), F''(t))
            r = (1 - self.margin - t * q).clamp_min(0)
            return (w_dw + t * dw_sq - 2 * self.C * float((r * q).sum()),
                    dw_sq + 2 * self.C * float((q_sq * (r > 0)).sum()))

        with _cpu_threads(q.device, 0):  # O(n) vector work: threads only add barriers
            return self._bracketed_newton(slope, g_dot_d)

    @staticmethod
    def _bracketed_newton(slope, g_dot_d: float) -> float:
        """Root of the increasing slope(t)[0] on t > 0 (its derivative is slope(t)[1])."""
        lo, hi, t = 0.0, math.inf, 1.0
        for _ in range(60):
            d1, d2 = slope(t)
            if d1 < 0:
                lo = t
            else:
                hi = t
            step = d1 / d2 if d2 > 0 else math.copysign(math.inf, d1)
            if abs(d1) <= 1e-10 * abs(g_dot_d) or abs(step) <= 1e-12 * t:
                return t
            t_new = t - step
            if not lo < t_new < hi:
                t_new = 2 * lo if math.isinf(hi) else 0.5 * (lo + hi)
            t = t_new
        return t

    def run(self, tol: float, max_iter: int) -> tuple:
        """Newton steps until the gradient is tol times its start, the active set survives a
        full step (the optimum: the quadratic of that set is minimised), or float32 rounding
        stops progress."""
        g0_norm = None
        for _ in range(max_iter):
            g = self.gradient()
            g0_norm = g0_norm or float(g.norm())
            if float(g.norm()) <= tol * g0_norm:
                break
            self.update_hessian()
            d = self.newton_direction(g)
            q = self.y * self.matvec(d[:-1], float(d[-1]))
            t = self.line_search(d, q, float(g @ d))
            if t * float(d.norm()) <= 1e-12 * (1 + float(self.w.norm())):
                break
            self.w += t * d[:-1]
            self.b += t * float(d[-1])
            self.margin += t * q
            if abs(t - 1) < 1e-3 and torch.equal(self.margin < 1, self.in_hessian):
                break
        w = self.w.cpu().numpy()
        return w, self.b - float(w @ self.mu.cpu().numpy())


@contextlib.contextmanager
def _cpu_threads(device: torch.device, work: int):
    """Run small CPU work (< SMALL_WORK multiply-adds) on one torch thread, restored after.
    There a parallel region costs more than it saves, and on a CPU shared with other busy
    processes every one can stall for a scheduler time slice (BENCHMARKS.md, "Boundary
    fitting", has what that cost)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or work >= SMALL_WORK or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resolve_solver(solver: str, selection: str, space: str, n_train: int, dim: int) -> str:
    """The solver 'auto' stands for, from benchmarks/bench_fit.py (BENCHMARKS.md): all reach
    the same accuracy, so it picks the fastest for the selection, the space and the size.

    extremes           near-separable classes, few active constraints: liblinear.
    threshold in Z     every sample, classes overlap; Z is N(0, I), so L-BFGS on the
                       logistic loss needs few steps: logistic, unless one Newton Hessian
                       (n_train * D^2) is small enough to be cheaper (NEWTON_MAX_WORK_Z).
    threshold in W/W+  the same overlap, but W is far from isotropic (a condition number in
                       the thousands): first-order solvers crawl where Newton steps do not.
                       newton, while its D x D Hessian is affordable (NEWTON_MAX_DIM)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver != "auto":
        return solver
    if selection == "extremes" or dim > NEWTON_MAX_DIM:
        return "liblinear"
    if space == "z" and n_train * dim ** 2 > NEWTON_MAX_WORK_Z:
        return "logistic"
    return "newton"


def fit_linear(X: np.ndarray, y: np.ndarray, solver: str, C: float, device: str) -> tuple:
    """(w [D] float64, b) of the named solver (resolved: not 'auto') on rows X [n, D],
    labels y [n] +-1; `device`: where 'newton' runs."""
    if solver == "svc":
        return solve_svc(X, y, C)
    if solver == "liblinear":
        return solve_liblinear(X, y, C)
    if solver == "logistic":
        return solve_logistic(X, y, C)
    return solve_newton(X, y, C, device)


def conditional_normal(primal: np.ndarray, conditions, rcond: float = 1e-6) -> np.ndarray:
    """Project the span of the conditions out of a primal normal: n' = (I - P_C) n, normalised.

    primal [D]; conditions [K, D] (or a list of [D]). For one unit condition this is InterFaceGAN's
    n - (n.c) c, and on well-conditioned input it equals their n - C^T (C C^T)^-1 C n.
    Near-collinear conditions: (C C^T)^-1 does not exist numerically, so P_C is built from the
    eigen-decomposition of C C^T (rows of C normalised), keeping the eigen-directions with
    eigenvalue > rcond * largest: the hard-threshold form of the ridge solution
    C^T (C C^T + ridge I)^-1 C n, with exact orthogonality to the kept span, where a ridge
    only reaches O(ridge). Raises ValueError if n lies (nearly) inside span(C)."""
    n = _unit(np.asarray(primal, dtype=np.float64).reshape(-1), "primal")      # [D]
    cond = np.atleast_2d(np.asarray(conditions, dtype=np.float64))             # [K, D]
    if cond.shape[1] != n.size:
        raise ValueError(f"conditions must be [K, {n.size}], got {cond.shape}")
    cond = np.stack([_unit(c, f"condition {k}") for k, c in enumerate(cond)])
    evals, evecs = np.linalg.eigh(cond @ cond.T)                                 # [K], [K, K]
    keep = evals > rcond * evals.max()
    basis = cond.T @ evecs[:, keep] / np.sqrt(evals[keep])                      # [D, r] orthonormal
    residual = n - basis @ (basis.T @ n)
    residual = residual - basis @ (basis.T @ residual)   # second pass: orthogonal to rounding
    size = float(np.linalg.norm(residual))
    if size < MIN_RESIDUAL:
        raise ValueError(f"the primal normal lies inside the span of the conditions "
                         f"(|n'| = {size:.2e} < {MIN_RESIDUAL}): nothing left to edit")
    return residual / size


def _unit(v: np.ndarray, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not norm > 0 or not math.isfinite(norm):
        raise ValueError(f"{name} must be a non-zero finite vector")
    return v / norm
