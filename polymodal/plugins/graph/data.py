"""Graph data sources: ``karate_club`` (real, node classification) and ``graph_families`` (synthetic, graph
classification).

``karate_club``: PyG's bundled Zachary karate club (34 members, 4 communities); a seeded, stratified split of the
nodes into labelled training and test nodes; samples are the one graph (``Data``, no node features unless
``node_features``), targets its node labels ``[34]`` with ``-100`` on the nodes of the other split.
``graph_families``: cycles, random trees, grids, cliques and stars of random sizes with random extra or missing
edges and shuffled node ids (``Data`` without node features), learnable because the families differ in degree
distribution and cycle structure, which message passing and the encodings see; targets: family indices (0-d long
tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings, SampleList
from polymodal.plugins.graph._pyg import Data

__all__ = [
    "GRAPH_FAMILIES",
    "GraphFamiliesDataSource",
    "GraphFamiliesDataSourceConfig",
    "KarateClubDataSource",
    "KarateClubDataSourceConfig",
]


class KarateClubDataSourceConfig(DataSourceConfig):
    type: str = "karate_club"
    num_train: int = Field(
        64, gt=0, description="Training samples: copies of the one graph (each gets fresh sign flips)."
    )
    num_test: int = Field(
        4, gt=0, description="Test samples: copies of the graph labelled on the test nodes."
    )
    train_fraction: float = Field(
        0.5, gt=0, lt=1, description="Share of each community's nodes labelled for training."
    )
    node_features: bool = Field(
        False,
        description="Keep PyG's node features (the 34 x 34 identity: node ids); tokenizer_config() then sets "
        "in_channels=34. Off: the graph structure alone.",
    )


class KarateClubDataSource(DataSource):
    """Zachary's karate club (PyG): 34 members, 4 communities; node classification on a split of the nodes."""

    name: ClassVar[str] = "karate_club"
    modality: ClassVar[str] = "graph"
    config_class: ClassVar[type[KarateClubDataSourceConfig]] = KarateClubDataSourceConfig

    def _graph(self) -> tuple[Data, Tensor, Tensor]:
        """``(graph, labels [34], train node mask [34])``."""
        from torch_geometric.datasets import KarateClub

        data = KarateClub()[0]
        g = torch.Generator().manual_seed(self.config.seed)
        train = torch.zeros(data.num_nodes, dtype=torch.bool)
        for k in data.y.unique():  # stratified: train_fraction of each community, at least one node
            nodes = (data.y == k).nonzero().squeeze(1)
            nodes = nodes[torch.randperm(len(nodes), generator=g)]
            train[nodes[: max(1, round(self.config.train_fraction * len(nodes)))]] = True
        graph = Data(edge_index=data.edge_index, num_nodes=data.num_nodes)
        if self.config.node_features:
            graph.x = data.x.float()
        return graph, data.y.long(), train

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        graph, y, train = self._graph()
        ignore = torch.full_like(y, -100)
        y_train, y_test = torch.where(train, y, ignore), torch.where(~train, y, ignore)
        return {
            "train": SampleList([(graph, y_train)] * c.num_train),
            "test": SampleList([(graph, y_test)] * c.num_test),
        }

    def collate_targets(self, targets: Sequence[Any]) -> Tensor:
        """Node labels ``[N_i]`` -> ``[B, N_max]``, padded with ``-100`` (ignored by the loss)."""
        return torch.nn.utils.rnn.pad_sequence(
            [torch.as_tensor(t) for t in targets], batch_first=True, padding_value=-100
        )

    def tokenizer_config(self) -> dict[str, Any]:
        """The model's tokenizer entry for this data."""
        return {"type": "graph", "in_channels": 34 if self.config.node_features else 0}

    def task(self) -> dict[str, Any]:
        return {"type": "token_classification", "num_classes": 4}

    def baseline(self) -> float:
        """Accuracy on the test nodes of always predicting the training nodes' majority community."""
        _, y, train = self._graph()
        majority = torch.bincount(y[train]).argmax()
        return float((y[~train] == majority).float().mean())


GRAPH_FAMILIES = ("cycle", "tree", "grid", "clique", "star")


def _family_edges(kind: str, n: int, g: torch.Generator) -> tuple[list[tuple[int, int]], int]:
    """Undirected edges ``(i, j)`` of one graph of the family with about ``n`` nodes; returns (edges, nodes)."""
    if kind == "cycle":
        return [(i, (i + 1) % n) for i in range(n)], n
    if kind == "tree":  # random recursive tree
        return [(int(torch.randint(0, i, (1,), generator=g)), i) for i in range(1, n)], n
    if kind == "grid":
        rows = int(torch.randint(2, max(3, int(n**0.5) + 1), (1,), generator=g))
        cols = max(2, n // rows)
        edges = [(r * cols + q, r * cols + q + 1) for r in range(rows) for q in range(cols - 1)]
        edges += [(r * cols + q, (r + 1) * cols + q) for r in range(rows - 1) for q in range(cols)]
        return edges, rows * cols
    if kind == "clique":
        return [(i, j) for i in range(n) for j in range(i + 1, n)], n
    return [(0, i) for i in range(1, n)], n  # star


class GraphFamiliesDataSourceConfig(DataSourceConfig):
    type: str = "graph_families"
    num_train: int = Field(500, gt=0, description="Training graphs (balanced over the families).")
    num_test: int = Field(250, gt=0, description="Test graphs.")
    min_nodes: int = Field(6, ge=4, description="Fewest nodes of a graph.")
    max_nodes: int = Field(20, ge=4, description="Most nodes of a graph (grids round down to rows x cols).")
    noise_edges: int = Field(
        2, ge=0, description="Random edges added to each graph (removed from cliques), so no family is exact."
    )

    @model_validator(mode="after")
    def _check(self) -> GraphFamiliesDataSourceConfig:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) exceeds max_nodes ({self.max_nodes})")
        return self


class GraphFamiliesDataSource(DataSource):
    """Synthetic graph classification: cycles, trees, grids, cliques and stars with noise edges."""

    name: ClassVar[str] = "graph_families"
    modality: ClassVar[str] = "graph"
    config_class: ClassVar[type[GraphFamiliesDataSourceConfig]] = GraphFamiliesDataSourceConfig
    num_classes: ClassVar[int] = len(GRAPH_FAMILIES)
    demo: ClassVar[DemoSettings | None] = DemoSettings(head={"pool": "mean"})

    def generate(self, num: int, seed: int) -> list[tuple[Data, Tensor]]:
        """``num`` graphs with their family (0-d long tensor), balanced over the families in a seeded order."""
        c = self.config
        g = torch.Generator().manual_seed(seed)
        labels = (torch.arange(num) % len(GRAPH_FAMILIES))[torch.randperm(num, generator=g)]
        graphs = []
        for label in labels.tolist():
            kind = GRAPH_FAMILIES[label]
            edges, n = _family_edges(
                kind, int(torch.randint(c.min_nodes, c.max_nodes + 1, (1,), generator=g)), g
            )
            present = {(min(i, j), max(i, j)) for i, j in edges}
            if kind == "clique":
                for _ in range(min(c.noise_edges, len(present) - 1)):
                    present.discard(sorted(present)[int(torch.randint(0, len(present), (1,), generator=g))])
            else:
                for _ in range(c.noise_edges):
                    i, j = torch.randint(0, n, (2,), generator=g).tolist()
                    if i != j:
                        present.add((min(i, j), max(i, j)))
            perm = torch.randperm(n, generator=g)  # node ids carry no information
            ei = perm[torch.tensor(sorted(present), dtype=torch.long).T]
            graphs.append(Data(edge_index=torch.cat([ei, ei.flip(0)], 1), num_nodes=n))
        return list(zip(graphs, labels))

    def splits(self) -> dict[str, Dataset]:
        """Its own seeds (``2 seed`` for training, ``2 seed + 1`` for testing), not the default
        ``seed + TEST_SEED_OFFSET``, so that the graphs stay those it has always drawn."""
        c = self.config
        return {
            "train": SampleList(self.generate(c.num_train, 2 * c.seed)),
            "test": SampleList(self.generate(c.num_test, 2 * c.seed + 1)),
        }

    def tokenizer_config(self) -> dict[str, Any]:
        """The model's tokenizer entry for this data (graphs without node features)."""
        return {"type": "graph", "in_channels": 0}
