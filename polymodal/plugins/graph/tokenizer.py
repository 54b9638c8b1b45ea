"""The graph tokenizer: node tokens from message passing plus structural encodings, as GraphGPS (Rampášek et al.,
arXiv 2205.12454) and Meta-Transformer's graph branch (arXiv 2307.10802).

Input: PyG graphs (a ``Batch``, one ``Data`` or a list of ``Data``: ``x [N, F]`` with ``F = in_channels`` or none,
``edge_index [2, E]``, optional ``edge_attr [E, edge_dim]``); tokens ``[B, N_max, D]`` with ``mask`` ``True`` on
each graph's real nodes; ``meta["num_nodes"]`` ``[B]``. The class also says how a table of SMILES becomes a
dataset (:meth:`GraphTokenizer.dataset_from_table`) and fits ``in_channels``/``edge_dim`` on a graph
(:meth:`GraphTokenizer.config_for_data`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.graph._pyg import Batch, Data, GCNConv, GINConv, GINEConv, degree, to_dense_batch
from polymodal.plugins.graph.builders import feature_sizes, from_smiles
from polymodal.plugins.graph.encodings import PE_ATTRS, laplacian_pe, random_walk_pe

__all__ = ["GraphTokenizer", "GraphTokenizerConfig"]


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
        self.check_token_count(g.num_nodes, f"a graph of {g.num_nodes} nodes (one token per node)")  # before its PE
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
        if getattr(batch, "batch", None) is None or batch.num_graphs == 0:  # Batch() has no graphs and no vector
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

    # -- the user's data (class-level) --------------------------------------------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """Graphs have no one-file-per-sample form: they come as PyG graphs or SMILES strings."""
        raise ValueError(
            f"{cls.modality}: no file reader for this modality; pass reader=<path -> raw sample>; "
            "graphs through from_graphs or from_smiles"
        )

    @classmethod
    def dataset_from_table(
        cls,
        frame: Any,
        *,
        modality: Any,
        target: str | Sequence[str] | None,
        columns: list[str] | None,
        tokenizer: Any,
        **options: Any,
    ) -> Any:
        """Molecules of a table: one column of SMILES strings (``columns``, default ``"smiles"``) labelled by
        ``target`` (required), read by :func:`~polymodal.plugins.graph.from_smiles` (``options``: ``task``,
        ``class_names``, ``on_error``)."""
        from polymodal.data import table_targets
        from polymodal.data.dataset import tokenizer_config

        tokenizer_config(modality, tokenizer)  # a bad tokenizer spec fails first, as for every modality
        if target is None:
            raise ValueError(f"{cls.name}: pass target=<column> (columns: {list(frame.columns)})")
        y = table_targets(frame, target, cls.name)
        single = columns or ["smiles"]
        if len(single) != 1 or single[0] not in frame.columns:
            raise KeyError(
                f"{cls.name}: expected one column of samples, got {single}; columns: {list(frame.columns)}"
            )
        return from_smiles(
            frame[single[0]].tolist(),
            y,
            tokenizer=tokenizer,
            on_error=options.get("on_error", "raise"),
            task=options.get("task"),
            class_names=options.get("class_names"),
        )

    @classmethod
    def config_for_data(cls, data: Any, task: str, explicit: Collection[str]) -> dict[str, Any]:
        """``in_channels`` and ``edge_dim`` fitted on a graph (``data``: one graph, or graphs whose first one is
        taken): the widths of its ``x`` and ``edge_attr`` (0 where it has none), other than those in
        ``explicit``."""
        return feature_sizes(data, explicit)
