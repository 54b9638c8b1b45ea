"""Graph plugin: node tokens from message passing plus structural encodings, as in GraphGPS (Rampášek et al.,
arXiv 2205.12454) and Meta-Transformer's graph branch (arXiv 2307.10802).

Input: PyTorch Geometric graphs: a ``Batch``, one ``Data``, or a list of ``Data`` (node features ``x [N, F]``
with ``F = in_channels``, or none when ``in_channels = 0``; ``edge_index [2, E]``; optional ``edge_attr
[E, edge_dim]``). Graphs of any sizes mix in one batch.
Structural positional encoding, per graph and non-learned (``preprocess``/``collate``, CPU): the ``pe_dim`` (8)
eigenvectors of the symmetric normalised Laplacian ``I - D^-1/2 A D^-1/2`` after the trivial one (zero-padded
for graphs with fewer nodes; signs flipped at random per graph in training), or random-walk return
probabilities for 1..``pe_dim`` steps (PyG's ``AddRandomWalkPE``). Stored on each ``Data`` as PyG's
``laplacian_eigenvector_pe`` / ``random_walk_pe``.
Tokens: node states ``h = W x (or a learned node vector) + W_pe pe + degree embedding``, refined by
``num_layers`` (2) residual pre-norm GIN (GINE with edge features) or GCN layers, then ``to_dense_batch``:
``[B, N_max, D]`` with ``mask`` ``True`` on each graph's real nodes, in the graph's node order. Graph-level tasks
read the model's [CLS]; node-level tasks ("token_classification") read each node's token, with node labels
padded with ``-100``. ``meta["num_nodes"]`` is ``[B]``.

The user's graphs: :func:`from_graphs` (PyG graphs) and :func:`from_smiles` (molecules, :func:`smiles_to_graph`
through RDKit, ``polymodal[chem]``) give datasets whose ``in_channels``/``edge_dim`` are fitted on the first graph;
a table's SMILES column goes through ``polymodal.data.from_table(..., "graph", target=...)``.

Data sources: ``karate_club``: PyG's bundled Zachary karate club (real: 34 members, 4 communities; node
classification with a seeded, stratified split of the nodes into labelled training and test nodes);
``graph_families``: synthetic graph classification (cycles, random trees, grids, cliques, stars of random sizes
with random extra or missing edges and shuffled node ids), learnable because the families differ in degree
distribution and cycle structure, which message passing and the encodings see.

Modules: :mod:`.encodings` (structural encodings), :mod:`.tokenizer`, :mod:`.smiles` (SMILES -> graph),
:mod:`.builders` (datasets of graphs and SMILES), :mod:`.data` (data sources).
"""

from __future__ import annotations

from polymodal.plugins.graph.builders import from_graphs, from_smiles
from polymodal.plugins.graph.data import (
    GRAPH_FAMILIES,
    GraphFamiliesDataSource,
    GraphFamiliesDataSourceConfig,
    KarateClubDataSource,
    KarateClubDataSourceConfig,
)
from polymodal.plugins.graph.encodings import DENSE_EIGEN_LIMIT, PE_ATTRS, laplacian_pe, random_walk_pe
from polymodal.plugins.graph.smiles import smiles_to_graph
from polymodal.plugins.graph.tokenizer import GraphTokenizer, GraphTokenizerConfig
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "DENSE_EIGEN_LIMIT",
    "GRAPH_FAMILIES",
    "PE_ATTRS",
    "GraphFamiliesDataSource",
    "GraphFamiliesDataSourceConfig",
    "GraphTokenizer",
    "GraphTokenizerConfig",
    "KarateClubDataSource",
    "KarateClubDataSourceConfig",
    "from_graphs",
    "from_smiles",
    "laplacian_pe",
    "polymodal_components",
    "random_walk_pe",
    "smiles_to_graph",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [GraphTokenizer, KarateClubDataSource, GraphFamiliesDataSource]
