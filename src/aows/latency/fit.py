"""Fit per-layer latency unknowns to whole-network timings.

Each timed network k gives one equation sum_i L(c_i, c_i+1) = l_k: A x = l with A
sparse (A[k, v] = how often network k uses unknown v). We minimise

    ||A x - l||^2 + K * sum max(0, x_small - x_large)^2 + lam * ||D x||^2,   x >= 0

(plus a tiny ridge, see ``solve``) with an active-set Newton method. The second term is
the paper's monotonicity prior (Eq. 7: a wider layer is not faster). The third is ours:
D takes second divided differences of every layer type's table along c_in and along
c_out, so the prior is blind to any function a + b c_in + c c_out + d c_in c_out (the
FLOPs shape of a convolution) and penalises only departures from it. Measured in
benchmarks/latency_model.py, it lowers held-out error at every number of timed networks.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from aows.errors import AowsError
from aows.latency.defaults import DEFAULT_K, DEFAULT_RIDGE, DEFAULT_SMOOTH
from aows.latency.model import LatencyModel
from aows.latency.store import Samples
from aows.size import check_fit_memory
from aows.space import TIED_OPS, LayerSpec, SearchSpace

# Weight of a network timed by `aows latency refine` (sampler "refine") against one of the
# bulk samples: the refined networks are the search's picks, the ones that decide whether
# a budget is met, and 20 of them should not be outvoted by 2000 bulk networks. Measured
# (benchmarks/latency_bias.py, part 4; 10 held-out networks standing in for picks): any
# weight from 1 to 100 leaves the error on the other held-out networks as it was (4.07 %
# at 500 biased, 3.44-3.49 % at 2000) and on the picks' own retimings within 0.1 point.
REFINE_WEIGHT = 10.0
K_GRID = (0.0, 1.0, 10.0, 100.0, 1000.0)
# No 0 (the paper's prior alone): it was worse than smooth=1 at every size measured
# (benchmarks/latency_model.py), and without the smoothness term the active sets of
# the hinge cycle and the Newton finish takes 5.6 s a fold at 500 networks, half of the
# whole cross-validation. `--smooth 0` still fits it.
SMOOTH_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


def design_matrix(space: SearchSpace, configs: Sequence[Sequence[int]]) -> sp.csr_matrix:
    keys, ids = space.unknowns()
    idx = space.indices_many(configs)
    cols = np.stack([space.term_table(e, ids[e], idx) for e in range(space.n_terms)], axis=1)
    rows = np.repeat(np.arange(idx.shape[0]), space.n_terms)
    data = np.ones(rows.size)
    return sp.csr_matrix((data, (rows, cols.ravel())), shape=(idx.shape[0], len(keys)))


def _specs(space: SearchSpace) -> dict[str, LayerSpec]:
    return space.term_specs()


def monotonicity_matrix(space: SearchSpace) -> sp.csr_matrix:
    """Rows x_smaller - x_larger for unknowns differing in one of c_in, c_out or input
    size (neighbours in sorted order); the prior penalises positive rows."""
    keys, _ = space.unknowns()
    specs = _specs(space)
    groups: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for v, (tkey, cin, cout) in enumerate(keys):
        s = specs[tkey]
        if s.op in TIED_OPS:  # one width: neighbours along it
            groups[("tied", tkey)].append((cin, v))
        else:
            groups[("out", tkey, cin)].append((cout, v))
            groups[("in", tkey, cout)].append((cin, v))
        part = tkey[len(s.type_key):]  # a concatenation's part compares with its kind
        groups[("res", s.op, s.kernel, s.stride, s.bias, s.act, part, cin, cout)].append(
            (s.in_res, v))
    rows, cols, vals = [], [], []
    r = 0
    for members in groups.values():
        members.sort()
        for (_, a), (_, b) in zip(members, members[1:]):
            rows += [r, r]
            cols += [a, b]
            vals += [1.0, -1.0]
            r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, len(keys)))


def smoothness_matrix(space: SearchSpace) -> sp.csr_matrix:
    """Second divided differences (scaled to ms) along c_out and c_in of every table."""
    keys, _ = space.unknowns()
    specs = _specs(space)
    groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for v, (tkey, cin, cout) in enumerate(keys):
        if specs[tkey].op in TIED_OPS:
            groups[("tied", tkey)].append((cin, v))
            continue
        groups[("out", tkey, cin)].append((cout, v))
        groups[("in", tkey, cout)].append((cin, v))
    rows, cols, vals = [], [], []
    r = 0
    for members in groups.values():
        members.sort()
        for (w0, v0), (w1, v1), (w2, v2) in zip(members, members[1:], members[2:]):
            h = (w2 - w0) / 2.0
            rows += [r, r, r]
            cols += [v0, v1, v2]
            vals += [h / (w1 - w0), -h / (w1 - w0) - h / (w2 - w1), h / (w2 - w1)]
            r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, len(keys)))


def flops_vector(space: SearchSpace) -> np.ndarray:
    keys, _ = space.unknowns()
    first = {}
    for i, _, _, tkey in space.terms:
        first.setdefault(tkey, i)
    return np.array([space.layer_flops(first[tkey], cin, cout) for tkey, cin, cout in keys])


def _flops_init(A: sp.csr_matrix, y: np.ndarray, f: np.ndarray, n_terms: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """x0 = a * flops + b / n_terms, with (a, b) the (weighted) least-squares fit of y
    on flops."""
    tf = A @ f
    X = np.stack([tf, np.ones_like(tf)], axis=1)
    if weights is not None:
        s = np.sqrt(weights)
        X, y = X * s[:, None], y * s
    (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    return np.maximum(a * f + max(b, 0.0) / n_terms, 0.0), float(a), float(b)


@contextlib.contextmanager
def _one_blas_pool():
    """numpy's and scipy's wheels each bundle an OpenBLAS with its own thread pool. While
    scipy factorises, numpy's idle threads keep spinning on the same cores: measured here,
    that doubled every Cholesky (about 45 against 23 ms). numpy only does matrix-vector
    products here, so its pool is held to one thread for the duration."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    ctl = ThreadpoolController()
    blas = [lib for lib in ctl.lib_controllers if lib.user_api == "blas"]
    numpy_blas = [lib.filepath for lib in blas if "numpy" in lib.filepath]
    if len({lib.filepath for lib in blas}) < 2 or not numpy_blas:
        yield  # one shared BLAS (e.g. MKL, a distribution's OpenBLAS): nothing to do
        return
    with ctl.select(filepath=numpy_blas).limit(limits=1):
        yield


FLOAT64_FLIPS = 2  # active-set changes at or below which the iterations go to float64
FLOAT32_ITERS = 12  # float32 iterations at most
# float64 active-set iterations without a better iterate (of either precision), after which
# the projected Newton finishes from the best one. Where the sets cycle they come within a
# few members of the optimum and then swing away again (measured at 500 networks, smooth
# 1000: 14 flips at iteration 18, 723 at 21), so waiting out ``max_pdas`` only repeats
# factorisations. Measured on the cross-validation at 500 networks (40 solves): float64
# active-set steps 454 -> 106, Newton steps 395 -> 371, 42 -> 34 s, every CV error the
# same to 6 digits (the optimum does not change, only the path to it).
PDAS_PATIENCE = 3


def solve(A: sp.csr_matrix, y: np.ndarray, Dm: sp.csr_matrix, Ds: sp.csr_matrix,
          K: float, lam: float, x0: np.ndarray, ridge: float = DEFAULT_RIDGE,
          max_pdas: int = 30, max_newton: int = 100, start: np.ndarray | None = None
          ) -> tuple[np.ndarray, dict]:
    """argmin_{x >= 0} ||Ax - y||^2 + K ||max(0, Dm x)||^2 + lam ||Ds x||^2
    + rho ||x - x0||^2, with rho = ridge * mean diag(A'A) (a tiny pull toward the
    FLOPs-shaped start x0 that makes the minimiser unique when timings do not
    determine every unknown).

    The objective is convex and piecewise quadratic: on fixed sets of active bounds
    (x_v = 0) and active monotonicity rows it is a plain quadratic, solved by one
    Cholesky. Primal-dual active-set iterations guess the sets from the last solution
    (finite, usually 10 to 20 steps). They run in float32 (half the time of a float64
    factorisation) until the sets stop changing; the same step is then repeated in
    float64, and only a float64 step that leaves the sets unchanged ends the method, so
    the answer is the float64 optimum. Where the iterations cycle (``PDAS_PATIENCE``
    float64 steps without a better iterate), a projected Newton method with an Armijo
    line search (Bertsekas) finishes from the best iterate.

    ``start`` is a solution of a nearby problem (another fold, a neighbouring prior
    weight): from it, the projected Newton method runs alone, because the active sets
    are nearly right already. It does not change the optimum. Newton steps that stay on
    the same piece of the objective (same sets) reuse the last factorisation.
    """
    with _one_blas_pool():
        return _solve(A, y, Dm, Ds, K, lam, x0, ridge, max_pdas, max_newton, start)


def _solve(A, y, Dm, Ds, K, lam, x0, ridge, max_pdas, max_newton, start=None):
    """The active-set iterations, then (unless they settled) projected Newton from their
    best iterate; from a nearby problem's solution (``start``), projected Newton alone."""
    obj = _Objective(A, y, Dm, Ds, K, lam, x0, ridge)
    x = np.maximum(x0 if start is None else start, 0.0)
    # From a nearby problem's solution, the projected Newton alone is faster: the active
    # sets are nearly right, and the active-set iterations would first swing them away
    # (see PDAS_PATIENCE). Measured on the cross-validation (32 of its 36 solves start
    # so), old and new code alternating in one process, with the buffers of _Objective:
    # at 500 networks 35.2, 31.8 s -> 14.0, 13.9 s; at 2000, 17.9, 14.5 s -> 15.7,
    # 15.1 s; every CV error the same to 3e-10 (relative).
    if start is None:
        x, settled = _active_set(obj, x, max_pdas)
        if settled:
            obj.info["converged"] = "pdas"
            return x, obj.info
    x = _projected_newton(obj, x, max_newton)
    obj.info["converged"] = "newton"
    return x, obj.info


class _Objective:
    """The objective of ``solve`` for one problem: its value and gradient, and exact
    Newton steps on one of its quadratic pieces (fixed active sets), by Cholesky."""

    def __init__(self, A, y, Dm, Ds, K, lam, x0, ridge):
        self.U = U = A.shape[1]
        AtA = A.T @ A
        rho = ridge * max(float(AtA.diagonal().sum()) / U, 1e-12)
        self.G = (AtA + lam * (Ds.T @ Ds) if lam > 0 else AtA).toarray(order="C")
        self.G[np.diag_indices(U)] += rho
        # The systems are built in these buffers, one per precision, and factored in
        # place, from a C-ordered G (toarray gave a Fortran-ordered one, which LAPACK
        # then copied again). Profiled on the cross-validation at 500 networks (1612
        # unknowns): building a system 13.6 -> 6.6 ms, against 24-28 ms for a float64
        # Cholesky.
        self.bufs: dict[type, np.ndarray] = {}
        self.g32: list[np.ndarray] = []  # G in float32, made on first use
        self.b = A.T @ y + rho * x0
        self.K = K
        self.Dm = Dm = Dm.tocsr()
        self.Dmt = Dm.T.tocsr()
        self.use_hinge = K > 0 and Dm.shape[0] > 0
        # Dm has two entries per row (+1, -1): row r adds K * [[1, -1], [-1, 1]] on the pair
        self.pair_a = Dm.indices[0::2] if Dm.nnz == 2 * Dm.shape[0] else None
        self.pair_b = Dm.indices[1::2] if self.pair_a is not None else None
        if (self.pair_a is not None and np.unique(
                self.pair_a.astype(np.int64) * U + self.pair_b).size < self.pair_a.size):
            self.pair_a = self.pair_b = None  # repeated pairs: take the general path
        self.last_key, self.last_factor = None, None
        self.info = {"pdas_iters": 0, "pdas_float32_iters": 0, "newton_iters": 0,
                     "factors_reused": 0}

    def hinge_rows(self, x) -> np.ndarray:
        """The monotonicity rows active at x (violated: Dm x > 0)."""
        return (self.Dm @ x) > 0 if self.use_hinge else np.zeros(self.Dm.shape[0], bool)

    def system(self, R, F, dtype):
        """The Hessian with hinge rows R active, in ``dtype``, restricted to the free
        unknowns F by turning the rows and columns of the others into the identity
        (their step is then 0): a copy instead of a gather, same solution."""
        U, K = self.U, self.K
        if dtype == np.float32 and not self.g32:
            self.g32.append(self.G.astype(np.float32))
        M = self.bufs.setdefault(dtype, np.empty((U, U), dtype))
        np.copyto(M, self.g32[0] if dtype == np.float32 else self.G)
        if self.use_hinge and R.any():
            if self.pair_a is None:  # a general Dm: through the dense term
                DR = self.Dm[R]
                M += (K * (DR.T @ DR).toarray()).astype(dtype)
            else:  # the pairs are distinct (checked), so fancy-index updates are exact
                a, c = self.pair_a[R], self.pair_b[R]
                M[np.diag_indices(U)] += (K * (np.bincount(a, minlength=U) +
                                               np.bincount(c, minlength=U))).astype(dtype)
                M[a, c] -= K
                M[c, a] -= K
        fixed = np.flatnonzero(~F)
        if fixed.size:
            M[fixed, :] = 0.0
            M[:, fixed] = 0.0
            M[fixed, fixed] = 1.0
        return M

    def hess_vec(self, x, R):
        """The Hessian (hinge rows R active) times x."""
        out = self.G @ x
        if self.use_hinge and R.any():
            out += self.K * (self.Dmt @ (np.where(R, self.Dm @ x, 0.0)))
        return out

    def hess_diag(self, R):
        """The Hessian's diagonal with hinge rows R active."""
        d = np.diag(self.G).copy()
        if self.use_hinge and R.any():
            if self.pair_a is None:
                d += self.K * np.asarray(self.Dm[R].multiply(self.Dm[R]).sum(0)).ravel()
            else:
                np.add.at(d, self.pair_a[R], self.K)
                np.add.at(d, self.pair_b[R], self.K)
        return d

    def fg(self, x):
        """The objective (less its constant) and its gradient at x."""
        Gx = self.G @ x
        f = x @ Gx - 2.0 * (self.b @ x)
        g = 2.0 * (Gx - self.b)
        if self.use_hinge:
            h = np.maximum(self.Dm @ x, 0.0)
            f += self.K * (h @ h)
            g += 2.0 * self.K * (self.Dmt @ h)
        return f, g

    def newton_step(self, R, rhs, F, dtype=np.float64):
        """The Hessian's (rows R, free unknowns F) solve of rhs, 0 on the fixed unknowns;
        the factorisation is reused while R, F and dtype stay the same."""
        key = (R.tobytes(), F.tobytes(), dtype)
        if key == self.last_key:  # the same piece of the objective: the same matrix
            cf = self.last_factor
            self.info["factors_reused"] += 1
        else:
            self.last_key = None  # its buffer is about to be overwritten
            # symmetric, so the transpose of the C-ordered matrix is the Fortran-ordered
            # one LAPACK wants: factored in place, no further copy
            M = self.system(R, F, dtype).T
            try:
                cf = scipy.linalg.cho_factor(M, check_finite=False, overwrite_a=True)
            except np.linalg.LinAlgError:
                if dtype != np.float32:
                    raise
                self.info["float32_failed"] = True  # too ill-conditioned for float32
                return self.newton_step(R, rhs, F, np.float64)
            self.last_key, self.last_factor = key, cf
        out = scipy.linalg.cho_solve(cf, np.where(F, rhs, 0.0).astype(dtype),
                                     check_finite=False).astype(np.float64)
        out[~F] = 0.0
        return out


def _active_set(obj: _Objective, x: np.ndarray, max_pdas: int) -> tuple[np.ndarray, bool]:
    """Primal-dual active-set iterations, float32 until the sets nearly settle, then
    float64: (the float64 optimum, True), or (the best iterate, False) after
    ``PDAS_PATIENCE`` float64 steps without a better one or ``max_pdas`` steps."""
    info, b, U = obj.info, obj.b, obj.U
    R = obj.hinge_rows(x)
    Z = np.zeros(U, dtype=bool)
    c = float(np.trace(obj.G)) / U
    best_x, best_f = x, obj.fg(x)[0]
    stale = 0
    dtype = np.float32
    for it in range(max_pdas):
        if info.get("float32_failed"):
            dtype = np.float64
        xn = obj.newton_step(R, b, ~Z, dtype)
        mu = obj.hess_vec(xn, R) - b
        Zn = (mu - c * xn) > 0
        Rn = (obj.Dm @ xn) > 0 if obj.use_hinge else R
        info["pdas_iters"] = it + 1
        info["pdas_float32_iters"] += dtype == np.float32 and not info.get("float32_failed")
        flips = int(np.sum(Zn != Z) + np.sum(Rn != R))
        settled = flips == 0 and xn.min() >= 0
        if settled and dtype == np.float64:
            return xn, True
        if dtype == np.float32 and (flips <= FLOAT64_FLIPS or it + 1 >= FLOAT32_ITERS):
            # nearly settled (float32 rounding can keep a few borderline members
            # flipping), or taking long: finish in float64
            dtype = np.float64
            if settled:
                continue
        xp = np.maximum(xn, 0.0)
        fp = obj.fg(xp)[0]
        if fp < best_f:
            best_x, best_f, stale = xp, fp, 0
        elif dtype == np.float64:
            stale = stale + 1
            if stale >= PDAS_PATIENCE:
                info["pdas_stalled"] = True
                break
        Z, R = Zn, Rn
    return best_x, False


def _projected_newton(obj: _Objective, x: np.ndarray, max_newton: int) -> np.ndarray:
    """Projected Newton with an Armijo line search (globally convergent) from x, until
    the projected gradient or the decrease is negligible, or ``max_newton`` steps."""
    f, g = obj.fg(x)
    scale = max(1.0, float(np.abs(obj.b).max()))
    for it in range(max_newton):
        pg = x - np.maximum(x - g, 0.0)
        if np.abs(pg).max() <= 1e-9 * scale:
            break
        eps = min(1e-9 * scale, float(np.abs(pg).max()))
        act = (x <= eps) & (g > 0)
        Rx = obj.hinge_rows(x)
        d = obj.newton_step(Rx, g / 2.0, ~act)
        d[act] = g[act] / (2.0 * obj.hess_diag(Rx)[act])
        xn, fn, gn = _armijo(obj, x, f, g, d, act)
        obj.info["newton_iters"] = it + 1
        if f - fn <= 1e-14 * max(1.0, abs(f)):
            x, f, g = xn, fn, gn
            break
        x, f, g = xn, fn, gn
    else:  # the objective still decreasing after max_newton steps: record it
        obj.info["newton_limit"] = True
    return x


def _armijo(obj: _Objective, x, f, g, d, act):
    """Halve the step along -d (projected on x >= 0) until the Armijo condition holds
    (or the step is below 1e-8): the new point, its objective and gradient."""
    F = ~act
    alpha = 1.0
    while True:
        xn = np.maximum(x - alpha * d, 0.0)
        fn, gn = obj.fg(xn)
        dec = alpha * (g[F] @ d[F]) + g[act] @ (x[act] - xn[act])
        if f - fn >= 1e-4 * dec or alpha < 1e-8:
            return xn, fn, gn
        alpha *= 0.5


class Fitter:
    """Holds the space's fixed matrices so repeated fits (CV, learning curves) are cheap."""

    def __init__(self, space: SearchSpace):
        check_fit_memory(space)  # refused before its matrices are allocated
        self.space = space
        self.Dm = monotonicity_matrix(space)
        self.Ds = smoothness_matrix(space)
        self.f = flops_vector(space)

    def fit_x(self, configs, y, K=DEFAULT_K, smooth=DEFAULT_SMOOTH, ridge=DEFAULT_RIDGE,
              weights=None) -> np.ndarray:
        """The unknowns; ``weights`` (one per network, default all 1) scale each
        network's squared error in the least-squares term."""
        A = design_matrix(self.space, configs)
        y = np.asarray(y, float)
        weights = None if weights is None else np.asarray(weights, float)
        x0, _, _ = _flops_init(A, y, self.f, self.space.n_terms, weights)
        if weights is not None:
            s = np.sqrt(weights)
            A, y = sp.csr_matrix(A.multiply(s[:, None])), y * s
        x, self.last_info = solve(A, y, self.Dm, self.Ds, K, smooth, x0, ridge)
        return x

    def cross_validate(self, configs, y, K_grid=K_GRID, smooth_grid=SMOOTH_GRID, folds=4,
                       seed=0, fixed_K=None, fixed_smooth=None) -> tuple[float, float, dict]:
        """Pick (K, smooth) by k-fold RMSE: smooth over its grid first, then K."""
        y = np.asarray(y, float)
        n = len(y)
        perm = np.random.default_rng(seed).permutation(n)
        parts = np.array_split(perm, folds)
        A = design_matrix(self.space, configs)
        cache: dict[tuple[float, float], float] = {}
        train = [np.setdiff1d(perm, p) for p in parts]
        inits = [_flops_init(A[tr], y[tr], self.f, self.space.n_terms)[0] for tr in train]
        # each fold starts from its solution at the previous (K, smooth): the grids are
        # walked in order, so the active sets change little (measured on 2000 MobileNet-v1
        # networks: the whole search went from 42 s to about half)
        last: list[np.ndarray | None] = [None] * folds

        def cv_rmse(K, lam):
            if (K, lam) in cache:
                return cache[(K, lam)]
            err = 0.0
            for i, (p, tr) in enumerate(zip(parts, train)):
                x, _ = solve(A[tr], y[tr], self.Dm, self.Ds, K, lam, inits[i], start=last[i])
                last[i] = x
                err += float(np.sum((A[p] @ x - y[p]) ** 2))
            cache[(K, lam)] = float(np.sqrt(err / n))
            return cache[(K, lam)]

        K = DEFAULT_K if fixed_K is None else fixed_K
        lam = DEFAULT_SMOOTH if fixed_smooth is None else fixed_smooth
        if fixed_smooth is None:
            lam = min(smooth_grid, key=lambda s: cv_rmse(K, s))
        if fixed_K is None:
            K = min(K_grid, key=lambda k: cv_rmse(k, lam))
        table = {f"K={k:g},smooth={s:g}": v for (k, s), v in cache.items()}
        return K, lam, table


def _targets(space: SearchSpace, samples: Samples, normalise: bool
             ) -> tuple[np.ndarray, dict]:
    """Latencies to fit: drift-normalised to the median anchor when every record has one
    (see ``Samples.normalised``), else raw. Returns them and the model's anchor meta."""
    ref = samples.anchor_reference() if normalise else None
    if ref is None:
        return samples.latency_ms, {"anchor": None}
    return samples.normalised(ref), {"anchor": {"ref_ms": ref,
                                                "config": list(space.median_config())}}


def fit(space: SearchSpace, samples: Samples, K: float | str = DEFAULT_K,
        smooth: float | str = DEFAULT_SMOOTH, target: dict | None = None,
        ridge: float = DEFAULT_RIDGE, normalise: bool = True,
        refine_weight: float = REFINE_WEIGHT) -> LatencyModel:
    """Fit the black-box latency model (the paper's Section 4) to whole-network timings.

    With anchors in every record (and ``normalise``), the model predicts latencies in
    the machine's reference state (the median anchor timing).

    Args:
        space: the search space the samples were timed in.
        samples: timed networks (``aows.latency.store.read_samples``).
        K: weight of the monotonicity prior, or "auto" (cross-validation).
        smooth: weight of the smoothness prior, or "auto".
        target: provenance recorded in the model (default: the samples' header).
        ridge: pull toward FLOPs-shaped tables, for unknowns the timings leave free.
        normalise: drift-normalise by the chunk anchors when every record has one.
        refine_weight: weight of the networks timed by ``aows latency refine`` (records
            with sampler "refine"), the others weighing 1.

    Returns:
        A ``LatencyModel``; ``meta["fit"]`` records the settings, the training RMSE and
        how many unknowns no timed network covers.
    """
    if len(samples) == 0:
        raise AowsError("no samples to fit")
    y, anchor_meta = _targets(space, samples, normalise)
    fitter = Fitter(space)
    t0 = time.perf_counter()
    cv = None
    if K == "auto" or smooth == "auto":
        K, smooth, cv = fitter.cross_validate(
            samples.configs, y,
            fixed_K=None if K == "auto" else float(K),
            fixed_smooth=None if smooth == "auto" else float(smooth))
    K, smooth = float(K), float(smooth)
    refined = np.array([s == "refine" for s in samples.samplers] if samples.samplers
                       else np.zeros(len(samples), bool))
    weights = np.where(refined, refine_weight, 1.0) if refined.any() else None
    t1 = time.perf_counter()
    x = fitter.fit_x(samples.configs, y, K, smooth, ridge, weights)
    t2 = time.perf_counter()
    A = design_matrix(space, samples.configs)
    train_pred = A @ x
    rmse = float(np.sqrt(np.mean((train_pred - y) ** 2)))
    unseen = int(np.sum(np.asarray(A.sum(axis=0)).ravel() == 0))
    meta = {"target": target or (samples.header or {}).get("target", {}),
            "protocol": (samples.header or {}).get("protocol"),
            "fit": {"method": "blackbox", "K": K, "smooth": smooth, "ridge": ridge,
                    "n_samples": len(samples),
                    "train_rmse_ms": rmse, "fit_seconds": round(t2 - t1, 4),
                    "unknowns": A.shape[1], "unseen_unknowns": unseen,
                    "cv_seconds": round(t1 - t0, 3), "cv_rmse_ms": cv,
                    "refined_samples": int(refined.sum()), "refine_weight": refine_weight,
                    "solver": fitter.last_info,
                    "samples": samples.path}, **anchor_meta}
    return LatencyModel.from_unknowns(space, x, "blackbox", meta)


def fit_flops(space: SearchSpace, samples: Samples, target: dict | None = None,
              normalise: bool = True) -> LatencyModel:
    """Baseline: latency = a * FLOPs + b, spread over the layers."""
    y, anchor_meta = _targets(space, samples, normalise)
    f = flops_vector(space)
    A = design_matrix(space, samples.configs)
    _, a, b = _flops_init(A, y, f, space.n_terms)
    x = a * f + b / space.n_terms
    meta = {"target": target or (samples.header or {}).get("target", {}),
            "fit": {"method": "flops", "ms_per_mflop": a * 1e6, "intercept_ms": b,
                    "n_samples": len(samples), "samples": samples.path}, **anchor_meta}
    return LatencyModel.from_unknowns(space, x, "flops", meta)
