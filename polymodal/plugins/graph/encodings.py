"""Structural positional encodings of graphs (per graph, CPU, non-learned), as GraphGPS (Rampášek et al., arXiv
2205.12454) uses them.

:func:`laplacian_pe`: ``[N, k]`` eigenvectors of the symmetric normalised Laplacian ``I - D^-1/2 A D^-1/2`` after
the trivial one (zero columns for graphs with fewer nodes; scipy's sparse eigensolver above
:data:`DENSE_EIGEN_LIMIT` nodes). :func:`random_walk_pe`: ``[N, k]`` random-walk return probabilities after 1..k
steps (PyG's ``AddRandomWalkPE``). :data:`PE_ATTRS` names the ``Data`` attribute each is stored in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.plugins.graph._pyg import Data

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
        from scipy.sparse.linalg import eigsh

        a = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0].numpy(), ei[1].numpy())), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(np.float64)
        deg = np.asarray(a.sum(1)).ravel()
        dinv = sp.diags(np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0.0))
        lap = sp.eye(n) - dinv @ a @ dinv
        vals, vecs = eigsh(lap, k=min(k + 1, n - 1), which="SA", tol=1e-6)
        vecs = torch.from_numpy(vecs[:, np.argsort(vals)][:, 1 : k + 1])
    return F.pad(vecs, (0, k - vecs.shape[1])).float()


def random_walk_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    """``[N, k]`` probabilities of a random walk returning to its start after 1..k steps (PyG's
    ``AddRandomWalkPE``)."""
    from torch_geometric.transforms import AddRandomWalkPE

    data = AddRandomWalkPE(walk_length=k, attr_name="pe")(
        Data(edge_index=edge_index.cpu(), num_nodes=num_nodes)
    )
    return data.pe.float()
