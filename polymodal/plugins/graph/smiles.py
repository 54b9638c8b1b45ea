"""Molecules from SMILES strings as graphs, through RDKit and PyTorch Geometric's ``from_smiles`` (``polymodal[chem]``).

:func:`smiles_to_graph`: one SMILES string -> PyG ``Data`` with ``x`` ``(atoms, 9)`` and ``edge_attr``
``(2·bonds, 3)`` as float (PyG's categorical atom and bond features, the OGB molecule featurisation of Hu et al.,
arXiv 2005.00687), what the graph tokenizer takes with ``in_channels=9, edge_dim=3``.
"""

from __future__ import annotations

from typing import Any

from polymodal.core.extras import require

__all__ = ["smiles_to_graph"]


def smiles_to_graph(smiles: str) -> Any:
    """A molecule from its SMILES string -> PyG ``Data`` (PyG's ``from_smiles``, RDKit: ``polymodal[chem]``):
    ``x`` ``(atoms, 9)`` and ``edge_attr`` ``(2·bonds, 3)`` as float (PyG's categorical atom and bond features).
    An unparsable string raises ``ValueError`` (``from_smiles`` alone returns an empty graph)."""
    chem = require("rdkit.Chem", "chem", "reading SMILES")
    from rdkit import RDLogger
    from torch_geometric.utils import from_smiles

    RDLogger.DisableLog("rdApp.*")
    if not isinstance(smiles, str) or chem.MolFromSmiles(smiles) is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    g = from_smiles(smiles)
    g.x = g.x.float()
    g.edge_attr = g.edge_attr.float()
    del g.smiles
    return g
