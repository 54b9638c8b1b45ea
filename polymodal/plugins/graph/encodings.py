"""Structural positional encodings of graphs (per graph, CPU, non-learned), as GraphGPS (Rampášek et al., arXiv
2205.12454) uses them.

:func:`laplacian_pe`: ``[N, k]`` eigenvectors of the symmetric normalised Laplacian ``I - D^-1/2 A D^-1/2`` after
the trivial one (zero columns for graphs with fewer nodes; scipy's sparse eigensolver above
:data:`DENSE_EIGEN_LIMIT` nodes, Lanczos first and shift-invert when Lanczos stalls on clustered small eigenvalues,
as for long paths). :func:`random_walk_pe`: ``[N, k]`` random-walk return probabilities after 1..k steps (the
values of PyG's ``AddRandomWalkPE``), from sparse products over blocks of start nodes. Both stay within a few
seconds up to the tokenizer's ``max_tokens`` nodes; larger graphs are refused before they are encoded.
:data:`PE_ATTRS` names the ``Data`` attribute each is stored in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DENSE_EIGEN_LIMIT", "PE_ATTRS", "laplacian_pe", "random_walk_pe"]

PE_ATTRS = {"laplacian": "laplacian_eigenvector_pe", "random_walk": "random_walk_pe"}
DENSE_EIGEN_LIMIT = 2000  # above this many nodes, scipy's sparse eigensolver replaces a dense eigh


# -- structural encodings (per graph, CPU, non-learned) ---------------------------------------------------------------
def laplacian_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    """``[N, k]`` eigenvectors of the symmetric normalised Laplacian for the ``k`` smallest non-trivial
    eigenvalues (edges taken as undirected, self-loops dropped); zero columns where ``N - 1 < k``."""
    n = num_nodes
    ei = edge_index[:, edge_index[0] != edge_index[1]].cpu()
    if n <= DENSE_EIGEN_LIMIT:
        a = torch.zeros(n, n, dtype=torch.float64)
        a[ei[0], ei[1]] = 1.0
        a = torch.maximum(a, a.T)
        deg = a.sum(1)
        dinv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        lap = torch.eye(n, dtype=torch.float64) - dinv[:, None] * a * dinv[None, :]
        vecs = torch.linalg.eigh(lap).eigenvectors[:, 1 : k + 1]
    else:
        import numpy as np
        import scipy.sparse as sp
        from scipy.sparse.linalg import ArpackNoConvergence, eigsh

        a = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0].numpy(), ei[1].numpy())), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(np.float64)
        deg = np.asarray(a.sum(1)).ravel()
        dinv = sp.diags(np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0.0))
        lap = (sp.eye(n) - dinv @ a @ dinv).tocsc()
        count = min(k + 1, n - 1)
        try:  # Lanczos on the smallest eigenvalues: fast unless they cluster near 0
            vals, vecs = eigsh(lap, k=count, which="SA", tol=1e-6, maxiter=300)
        except ArpackNoConvergence:  # shift-invert around 0 (L + 1e-3 I is positive definite)
            vals, vecs = eigsh(lap, k=count, sigma=-1e-3, which="LM", tol=1e-6)
        vecs = torch.from_numpy(vecs[:, np.argsort(vals)][:, 1 : k + 1])
    return F.pad(vecs, (0, k - vecs.shape[1])).float()


def random_walk_pe(edge_index: Tensor, num_nodes: int, k: int, block: int = 1024) -> Tensor:
    """``[N, k]`` probabilities of a random walk returning to its start after 1..k steps (the values of PyG's
    ``AddRandomWalkPE``: transitions ``A[i, j] / deg(i)`` over the given directed edges, self-loops kept, a node
    without out-edges staying put with probability 0). Exact, from sparse x dense products over ``block`` start
    nodes at a time, so memory stays ``N x block`` and time ``k · E · N / block`` products."""
    n = num_nodes
    ei = edge_index.cpu()
    deg = torch.zeros(n, dtype=torch.float64).index_add_(0, ei[0], torch.ones(ei.shape[1], dtype=torch.float64))
    weight = 1.0 / deg[ei[0]]
    # P[i, j] = 1 / deg(i) for every edge i -> j; a walk's distribution after t steps from start s is row s of P^t,
    # so column-wise: X <- P^T X keeps X[:, s] the distribution of walks started at s.
    pt = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), weight, (n, n)).coalesce().to_sparse_csr()
    out = torch.zeros(n, k, dtype=torch.float64)
    for start in range(0, n, block):
        cols = torch.arange(start, min(start + block, n))
        x = torch.zeros(n, len(cols), dtype=torch.float64)
        x[cols, torch.arange(len(cols))] = 1.0
        for step in range(k):
            x = pt @ x
            out[cols, step] = x[cols, torch.arange(len(cols))]
    return out.float()
