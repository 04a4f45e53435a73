"""Direct numpy transcriptions of each paper's formula, written independently of the library (full
N×N matrices, SVD/QR, scipy): the references the tests compare the metrics against."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr


def knn_sets(x: np.ndarray, k: int, rule: str = "cosine") -> list[set[int]]:
    """[H24] S(i): the k nearest other items; ties to the smaller index (stable sort of -score)."""
    if rule == "cosine":
        z = x / np.linalg.norm(x, axis=1, keepdims=True)
        score = z @ z.T
    else:
        score = -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(score, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    return [set(order[i, :k].tolist()) for i in range(len(x))]


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int, rule: str = "cosine") -> float:
    """[H24] m_NN = mean_i |S_x(i) ∩ S_y(i)| / k."""
    a, b = knn_sets(x, k, rule), knn_sets(y, k, rule)
    return float(np.mean([len(a[i] & b[i]) / k for i in range(len(x))]))


def cycle_knn(x: np.ndarray, y: np.ndarray, k: int, rule: str = "cosine") -> float:
    """mean_i 1[∃ j ∈ S_y(i): i ∈ S_x(j)]."""
    a, b = knn_sets(x, k, rule), knn_sets(y, k, rule)
    return float(np.mean([any(i in a[j] for j in b[i]) for i in range(len(x))]))


def cknna(x: np.ndarray, y: np.ndarray, k: int, rule: str = "cosine") -> float:
    """[H24] Align(K, L) = Σ_ij α_ij (K_ij - E_l K_il)(L_ij - E_l L_il); CKNNA = Align(K,L)/sqrt(Align(K,K) Align(L,L))."""
    def kernel(a: np.ndarray) -> np.ndarray:
        z = a / np.linalg.norm(a, axis=1, keepdims=True) if rule == "cosine" else a
        g = z @ z.T
        return g - g.mean(1, keepdims=True)

    def mask(sets: list[set[int]]) -> np.ndarray:
        m = np.zeros((len(sets), len(sets)), dtype=bool)
        for i, s in enumerate(sets):
            m[i, list(s)] = True
        return m

    kx, ky = kernel(x), kernel(y)
    mx, my = mask(knn_sets(x, k, rule)), mask(knn_sets(y, k, rule))
    align = lambda a, b, m: float((a * b)[m].sum())  # noqa: E731
    return align(kx, ky, mx & my) / np.sqrt(align(kx, kx, mx) * align(ky, ky, my))


def svcca(x: np.ndarray, y: np.ndarray, keep: float = 0.99) -> float:
    """[R17]: SVD of each centred representation, keep the top directions explaining ``keep`` of the
    variance, CCA of the reduced ones (QR bases, singular values of QxᵀQy), mean correlation."""
    def reduce(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(0)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        share = np.cumsum(s**2) / np.sum(s**2)
        kept = int(np.argmax(share >= keep - 1e-15)) + 1
        return a @ vt[:kept].T

    qx, qy = np.linalg.qr(reduce(x))[0], np.linalg.qr(reduce(y))[0]
    return float(np.linalg.svd(qx.T @ qy, compute_uv=False).mean())


def pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """[M18]: ρ_i and canonical variates h_i = Q_x u_i of x; α̃_i = Σ_j |⟨h_i, x_j⟩|; Σ α_i ρ_i / Σ α_i."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    qx, qy = np.linalg.qr(xc)[0], np.linalg.qr(yc)[0]
    u, rho, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    h = qx @ u
    alpha = np.abs(h.T @ xc).sum(1)
    return float(alpha @ rho / alpha.sum())


def procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """[D21]: centred, unit Frobenius norm; ‖X‖² + ‖Y‖² - 2‖XᵀY‖_*."""
    a, b = x - x.mean(0), y - y.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.linalg.norm(a) ** 2 + np.linalg.norm(b) ** 2 - 2 * np.linalg.norm(a.T @ b, "nuc"))


def rsa(x: np.ndarray, y: np.ndarray, rdm: str = "correlation") -> float:
    """[K08]: Spearman correlation of the RDMs' upper triangles (scipy pdist order is i < j, row-major)."""
    return float(spearmanr(pdist(x, rdm), pdist(y, rdm))[0])


def related(n: int, dx: int, dy: int, seed: int = 0, noise: float = 0.3, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two representations of the same n items sharing a latent factor (y a nonlinear map of x plus noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dx))
    y = np.tanh(x @ rng.normal(size=(dx, dy)) / np.sqrt(dx)) + noise * rng.normal(size=(n, dy)) + shift
    return x, y


def orthogonal(d: int, seed: int) -> np.ndarray:
    """A random (d, d) orthogonal matrix."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))
