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

Data sources: ``karate_club``: PyG's bundled Zachary karate club (real: 34 members, 4 communities; node
classification with a seeded, stratified split of the nodes into labelled training and test nodes);
``graph_families``: synthetic graph classification (cycles, random trees, grids, cliques, stars of random sizes
with random extra or missing edges and shuffled node ids), learnable because the families differ in degree
distribution and cycle structure, which message passing and the encodings see.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.registry.hookspecs import hookimpl

# PyG scripts a few classes when imported; torch >= 2.14 deprecates that, noisily
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import GCNConv, GINConv, GINEConv
    from torch_geometric.utils import degree, to_dense_batch

__all__ = [
    "GRAPH_FAMILIES",
    "GraphFamiliesDataSource",
    "GraphFamiliesDataSourceConfig",
    "GraphTokenizer",
    "GraphTokenizerConfig",
    "KarateClubDataSource",
    "KarateClubDataSourceConfig",
    "laplacian_pe",
    "random_walk_pe",
]

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


# -- tokenizer ---------------------------------------------------------------------------------------------------------
class GraphTokenizerConfig(TokenizerConfig):
    type: str = "graph"
    in_channels: int = Field(
        0,
        ge=0,
        description="Node feature width F; 0: graphs without node features (a learned vector per node).",
    )
    edge_dim: int = Field(
        0, ge=0, description="Edge feature width (GINE layers); 0: edge features are not used."
    )
    conv: Literal["gin", "gcn"] = Field(
        "gin", description="Message-passing layer: GIN (GINE with edges) or GCN."
    )
    num_layers: int = Field(2, ge=0, description="Message-passing layers (residual, pre-norm).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on each layer's update.")
    positional_encoding: Literal["laplacian", "random_walk", "none"] = Field(
        "laplacian",
        description="Structural encoding: Laplacian eigenvectors, random-walk return probabilities, or none.",
    )
    pe_dim: int = Field(
        8, gt=0, description="Eigenvectors, or random-walk steps, of the structural encoding."
    )
    sign_flip: bool = Field(
        True, description="Flip Laplacian eigenvector signs at random per graph in training."
    )
    max_degree: int = Field(
        64, ge=0, description="Degree embedding for degrees 0..max_degree (larger ones clipped); 0: none."
    )

    @model_validator(mode="after")
    def _check(self) -> GraphTokenizerConfig:
        if self.conv == "gcn" and self.edge_dim:
            raise ValueError(
                "graph: conv='gcn' takes no edge features; use conv='gin' (GINE) with edge_dim > 0"
            )
        return self


class GraphTokenizer(Tokenizer):
    """Node tokens: projected features + structural encodings, message passing, padded to ``[B, N_max, D]``."""

    name: ClassVar[str] = "graph"
    config_class: ClassVar[type[GraphTokenizerConfig]] = GraphTokenizerConfig
    input_form: ClassVar[str] = "PyG `Batch`, `Data` or a list of `Data`"

    def __init__(self, config: GraphTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        d = c.embed_dim
        if c.in_channels:
            self.node_proj = nn.Linear(c.in_channels, d)
        else:
            self.node_token = nn.Parameter(torch.zeros(1, d))
            nn.init.trunc_normal_(self.node_token, std=0.02)
        self.pe_proj = nn.Linear(c.pe_dim, d) if c.positional_encoding != "none" else None
        self.degree_embed = nn.Embedding(c.max_degree + 1, d) if c.max_degree else None
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(c.num_layers))
        self.convs = nn.ModuleList(self._conv() for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(d)

    def _conv(self) -> nn.Module:
        c, d = self.config, self.config.embed_dim
        if c.conv == "gcn":
            return GCNConv(d, d)
        mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        return (
            GINEConv(mlp, train_eps=True, edge_dim=c.edge_dim) if c.edge_dim else GINConv(mlp, train_eps=True)
        )

    @property
    def pe_attr(self) -> str | None:
        return PE_ATTRS.get(self.config.positional_encoding)

    # -- preprocessing -------------------------------------------------------------------------------------
    def _check_graph(self, g: Any, where: str = "") -> Data:
        """Check one graph's fields (not the encoding); return it."""
        c = self.config
        expected = "a torch_geometric Data/Batch or a list of Data"
        if not isinstance(g, Data):
            raise self.fail(expected, describe(g))
        n = g.num_nodes
        if not n:
            raise self.fail(f"graphs with at least one node{where}", "a graph with 0 nodes")
        ei = g.edge_index
        if ei is None:
            raise self.fail(f"edge_index (2, E){where}", "none")
        if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.shape[0] != 2 or ei.dtype != torch.long:
            raise self.fail(f"edge_index as a long tensor (2, E){where}", describe(ei))
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            raise self.fail(
                f"edge_index entries in [0, {n}) (the number of nodes){where}",
                f"entries in [{int(ei.min())}, {int(ei.max())}]",
            )
        x = g.x
        if c.in_channels:
            if not isinstance(x, Tensor) or not x.is_floating_point() or tuple(x.shape) != (n, c.in_channels):
                raise self.fail(
                    f"node features x as a float tensor ({n}, {c.in_channels}){where}", describe(x)
                )
            if not bool(torch.isfinite(x).all()):
                raise self.fail(
                    f"finite node features{where}", f"{int((~torch.isfinite(x)).sum())} NaN/Inf values"
                )
        elif x is not None:
            raise self.fail(
                f"graphs without node features (in_channels is 0){where}", f"x {describe(x)}; set in_channels"
            )
        if c.edge_dim:
            ea = g.edge_attr
            if (
                not isinstance(ea, Tensor)
                or not ea.is_floating_point()
                or tuple(ea.shape) != (ei.shape[1], c.edge_dim)
            ):
                raise self.fail(
                    f"edge features edge_attr as a float tensor ({ei.shape[1]}, {c.edge_dim}){where}",
                    describe(ea),
                )
            if not bool(torch.isfinite(ea).all()):
                raise self.fail(
                    f"finite edge features{where}", f"{int((~torch.isfinite(ea)).sum())} NaN/Inf values"
                )
        return g

    def preprocess(self, raw: Any) -> Data:
        """One graph (``Data``, or a dict with ``edge_index``, ``x``, ``edge_attr``, ``num_nodes``) -> a ``Data``
        with only ``x``, ``edge_index``, ``edge_attr`` and the structural encoding (``pe_attr``) attached."""
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - {"x", "edge_index", "edge_attr", "num_nodes"})
            if unknown or "edge_index" not in raw:
                raise self.fail(
                    "a dict with 'edge_index' and optional 'x', 'edge_attr', 'num_nodes'",
                    f"keys {sorted(raw)}",
                )
            raw = Data(**raw)
        if isinstance(raw, Batch):
            raise self.fail("one graph (a Data)", "a Batch; use collate or call the tokenizer on it")
        g = self._check_graph(raw)
        out = Data(edge_index=g.edge_index, num_nodes=g.num_nodes)
        if self.config.in_channels:
            out.x = g.x.float()
        if self.config.edge_dim:
            out.edge_attr = g.edge_attr.float()
        if self.pe_attr:
            fn = laplacian_pe if self.config.positional_encoding == "laplacian" else random_walk_pe
            out[self.pe_attr] = fn(g.edge_index, g.num_nodes, self.config.pe_dim)
        return out

    def collate(self, samples: Sequence[Any]) -> Batch:
        """Graphs -> one ``Batch``; graphs without this tokenizer's structural encoding are preprocessed first."""
        if len(samples) == 0:
            raise self.fail("at least one graph to collate", "an empty list")
        if not all(isinstance(s, Data) and not isinstance(s, Batch) for s in samples):
            bad = next(s for s in samples if not isinstance(s, Data) or isinstance(s, Batch))
            raise self.fail("a list of torch_geometric Data", f"a list holding {describe(bad)}")
        ready = [s if self._ready(s) else self.preprocess(s) for s in samples]
        return Batch.from_data_list(ready)

    def _ready(self, g: Data) -> bool:
        """Whether ``g`` has exactly the fields this tokenizer uses, with the structural encoding."""
        keys = {"edge_index"} | ({"x"} if self.config.in_channels else set())
        keys |= {"edge_attr"} if self.config.edge_dim else set()
        keys |= {self.pe_attr} if self.pe_attr else set()
        return set(g.keys()) - {"num_nodes"} == keys  # PyG lists an explicit num_nodes as a key

    # -- forward -------------------------------------------------------------------------------------------
    def validate(self, batch: Any) -> Batch:
        """Check the input and return a ``Batch`` carrying the structural encoding."""
        if isinstance(batch, (list, tuple)):
            batch = self.collate(batch)  # graphs that already carry the encoding are checked below
        elif not isinstance(batch, Data):
            raise self.fail("a torch_geometric Data/Batch or a list of Data", describe(batch))
        elif not isinstance(batch, Batch):
            batch = self.collate([batch])
        if batch.num_graphs == 0:
            raise self.fail("a non-empty batch of graphs", "a Batch of 0 graphs")
        self._check_graph(batch, " in the batch")
        if self.pe_attr:
            pe = batch.get(self.pe_attr)
            if pe is None:  # slow path: encodings are per graph; collate/preprocess in workers avoid it
                return self.collate(batch.to_data_list())
            if not isinstance(pe, Tensor) or tuple(pe.shape) != (batch.num_nodes, self.config.pe_dim):
                raise self.fail(f"{self.pe_attr} ({batch.num_nodes}, {self.config.pe_dim})", describe(pe))
            if not bool(torch.isfinite(pe).all()):
                raise self.fail(
                    f"finite {self.pe_attr}", f"{int((~torch.isfinite(pe)).sum())} NaN/Inf values"
                )
        return batch

    def forward(self, batch: Batch | Data | Sequence[Data]) -> Tokens:
        b = self.validate(batch)
        c = self.config
        dtype = self.norm.weight.dtype
        device = self.norm.weight.device
        b = b.to(device)
        n = b.num_nodes
        if c.in_channels:
            h = self.node_proj(b.x.to(dtype))
        else:
            h = self.node_token.expand(n, -1)
        if self.pe_proj is not None:
            pe = b[self.pe_attr].to(dtype)
            if c.positional_encoding == "laplacian" and c.sign_flip and self.training:
                signs = torch.randint(0, 2, (b.num_graphs, c.pe_dim), device=device).to(dtype) * 2 - 1
                pe = pe * signs[b.batch]
            h = h + self.pe_proj(pe)
        if self.degree_embed is not None:
            deg = degree(b.edge_index[1], n, dtype=torch.long).clamp(max=c.max_degree)
            h = h + self.degree_embed(deg)
        edge_attr = b.edge_attr.to(dtype) if c.edge_dim else None
        for norm, conv in zip(self.norms, self.convs):
            z = norm(h)
            z = conv(z, b.edge_index, edge_attr) if edge_attr is not None else conv(z, b.edge_index)
            h = h + F.dropout(F.gelu(z), c.dropout, self.training)
        dense, mask = to_dense_batch(self.norm(h), b.batch, batch_size=b.num_graphs)
        return Tokens(dense, mask, self.modality, {"num_nodes": mask.sum(1)})

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Batch:
        c = self.config
        graphs = []
        for i in range(batch_size):
            n = 3 + 2 * i
            ring = torch.arange(n)
            ei = torch.stack([ring, (ring + 1) % n])
            g = Data(edge_index=torch.cat([ei, ei.flip(0)], 1), num_nodes=n)
            if c.in_channels:
                g.x = torch.randn(n, c.in_channels, generator=generator)
            if c.edge_dim:
                g.edge_attr = torch.randn(2 * n, c.edge_dim, generator=generator)
            graphs.append(g)
        return self.collate(graphs)

    def invalid_examples(self) -> list[Any]:
        c = self.config
        ring = torch.tensor([[0, 1, 2], [1, 2, 0]])

        def graph(**fields: Any) -> Data:
            base: dict[str, Any] = {"edge_index": ring, "num_nodes": 3}
            if c.in_channels:
                base["x"] = torch.randn(3, c.in_channels)
            if c.edge_dim:
                base["edge_attr"] = torch.randn(3, c.edge_dim)
            return Data(**{**base, **fields})

        return [
            graph(edge_index=ring.float()),  # dtype
            graph(edge_index=torch.tensor([[0, 1], [1, 3]])),  # node 3 of 3
            graph(edge_index=torch.tensor([[0, -1], [1, 2]])),
            graph(edge_index=torch.zeros(3, 2, dtype=torch.long)),  # shape
            graph(x=torch.randn(3, c.in_channels + 2)),  # feature width
            graph(x=torch.full((3, max(1, c.in_channels)), float("nan"))),
            Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=0),  # no nodes
            [],  # no graphs
            [graph(), 3],
            torch.randn(3, 4),
        ]


# -- data sources ------------------------------------------------------------------------------------------------------
class _Graphs(Dataset):
    def __init__(self, graphs: list[Data], targets: list[Tensor]) -> None:
        self.graphs, self.targets = graphs, targets

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> tuple[Data, Tensor]:
        return self.graphs[i], self.targets[i]


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
            "train": _Graphs([graph] * c.num_train, [y_train] * c.num_train),
            "test": _Graphs([graph] * c.num_test, [y_test] * c.num_test),
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

    def _make(self, count: int, seed: int) -> _Graphs:
        c = self.config
        g = torch.Generator().manual_seed(seed)
        labels = (torch.arange(count) % len(GRAPH_FAMILIES))[torch.randperm(count, generator=g)]
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
        return _Graphs(graphs, list(labels))

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {"train": self._make(c.num_train, 2 * c.seed), "test": self._make(c.num_test, 2 * c.seed + 1)}

    def tokenizer_config(self) -> dict[str, Any]:
        """The model's tokenizer entry for this data (graphs without node features)."""
        return {"type": "graph", "in_channels": 0}


@hookimpl
def polymodal_components() -> list[type]:
    return [GraphTokenizer, KarateClubDataSource, GraphFamiliesDataSource]
