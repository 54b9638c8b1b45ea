"""graph plugin: structural encodings against exact references, message passing by hand, padding and the [CLS],
mixed graph sizes, node- and graph-level heads, errors, data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv, GINConv, GINEConv

import polymodal
import polymodal.plugins.graph.encodings as encodings_module
import polymodal.plugins.graph.tokenizer as tokenizer_module
from polymodal.core.component import ModalityInputError
from polymodal.plugins.graph import (
    GRAPH_FAMILIES,
    GraphFamiliesDataSource,
    GraphTokenizer,
    KarateClubDataSource,
    laplacian_pe,
    random_walk_pe,
)
from polymodal.testing import check_data_source, check_tokenizer


def undirected(pairs: list[tuple[int, int]]) -> Tensor:
    """``edge_index`` ``[2, 2E]`` with both directions of each pair."""
    e = torch.tensor(pairs, dtype=torch.long).T
    return torch.cat([e, e.flip(0)], 1)


def path(n: int) -> Tensor:
    return undirected([(i, i + 1) for i in range(n - 1)])


def cycle(n: int) -> Tensor:
    return undirected([(i, (i + 1) % n) for i in range(n)])


def random_graph(n: int, seed: int) -> Tensor:
    """A random recursive tree on ``n`` nodes plus ``n // 4`` random chords (connected, seeded)."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(int(torch.randint(0, i, (1,), generator=g)), i) for i in range(1, n)]
    pairs += [tuple(torch.randperm(n, generator=g)[:2].tolist()) for _ in range(n // 4)]
    return undirected(pairs)


def dense_adjacency(edge_index: Tensor, n: int) -> Tensor:
    """``A[i, j] = 1`` for an edge ``j -> i`` (messages flow from ``edge_index[0]`` to ``edge_index[1]``)."""
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edge_index[1], edge_index[0]] = 1.0
    return a


def normalized_laplacian(edge_index: Tensor, n: int) -> Tensor:
    a = dense_adjacency(edge_index, n)
    d = a.sum(1).rsqrt()
    return torch.eye(n, dtype=torch.float64) - d[:, None] * a * d[None, :]


def tokenizer(**overrides: object) -> GraphTokenizer:
    torch.manual_seed(0)
    return GraphTokenizer.from_config(embed_dim=16, **overrides).eval()


def test_discovered_through_entry_point() -> None:
    assert "graph" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "graph").status == "loaded"
    assert polymodal.get("data source", "karate_club") is KarateClubDataSource
    assert polymodal.get("data source", "graph_families") is GraphFamiliesDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("graph")  # example: rings of 3 and 5 nodes
    assert tuple(tokens.embeddings.shape) == (2, 5, 32)
    assert tokens.mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert tokens.meta["num_nodes"].tolist() == [3, 5]
    check_data_source("karate_club")
    check_data_source("graph_families")


# -- structural encodings -------------------------------------------------------------------------------------------
def test_laplacian_pe_of_a_path_is_the_closed_form() -> None:
    # the path P_n: eigenvalues of I - D^-1/2 A D^-1/2 are 1 - cos(pi k / (n - 1)), k = 0..n-1 (all distinct),
    # with eigenvectors v_k[i] ∝ sqrt(deg_i) cos(pi k i / (n - 1)): unique up to sign
    n, k = 6, 8
    pe = laplacian_pe(path(n), n, k).double()
    assert tuple(pe.shape) == (n, k)
    assert bool((pe[:, n - 1 :] == 0).all())  # 5 non-trivial eigenvectors, then zero columns
    lap = normalized_laplacian(path(n), n)
    deg = torch.tensor([1.0, 2, 2, 2, 2, 1], dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    for col in range(n - 1):
        v, kk = pe[:, col], col + 1
        lam = 1 - math.cos(math.pi * kk / (n - 1))
        assert (lap @ v - lam * v).abs().max() < 1e-6  # L v = λ v, λ ascending with the column
        assert abs(float(v.norm()) - 1) < 1e-6
        ref = deg.sqrt() * torch.cos(math.pi * kk * i / (n - 1))
        ref = ref / ref.norm()
        assert min((v - ref).abs().max(), (v + ref).abs().max()) < 1e-6


def test_laplacian_pe_of_a_cycle_and_the_sparse_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    # the cycle C_n: eigenvalues 1 - cos(2 pi m / n), each non-trivial one twice (for m < n/2)
    n, k = 12, 5
    lap = normalized_laplacian(cycle(n), n)
    expected = sorted(1 - math.cos(2 * math.pi * m / n) for m in range(n))[1 : k + 1]
    dense = laplacian_pe(cycle(n), n, k).double()
    monkeypatch.setattr(encodings_module, "DENSE_EIGEN_LIMIT", 4)  # scipy's eigsh path, as for > 2,000 nodes
    sparse = laplacian_pe(cycle(n), n, k).double()
    for pe in (dense, sparse):
        lams = [float(pe[:, c] @ lap @ pe[:, c]) for c in range(k)]
        assert lams == pytest.approx(expected, abs=1e-5)
        assert (lap @ pe - pe * torch.tensor(lams, dtype=torch.float64)).abs().max() < 1e-5
        assert (pe.T @ pe - torch.eye(k, dtype=torch.float64)).abs().max() < 1e-5  # orthonormal


def test_laplacian_pe_takes_edges_as_undirected_without_self_loops() -> None:
    # the path 0-1-2-3-4 given in one direction only, plus a self-loop at 2
    one_way = torch.tensor([[0, 1, 2, 3, 2], [1, 2, 3, 4, 2]])
    assert torch.equal(laplacian_pe(one_way, 5, 3), laplacian_pe(path(5), 5, 3))
    assert torch.equal(laplacian_pe(torch.zeros(2, 0, dtype=torch.long), 1, 3), torch.zeros(1, 3))


def test_random_walk_pe_is_the_diagonal_of_powers_of_the_transition_matrix() -> None:
    # a triangle 0-1-2 with a tail 2-3 and a pendant 0-4: degrees 2, 2, 3, 1, 1 (no two alike everywhere)
    edge_index = undirected([(0, 1), (1, 2), (2, 0), (2, 3), (0, 4)])
    n, k = 5, 6
    a = dense_adjacency(edge_index, n)
    p = a / a.sum(1, keepdim=True)  # D^-1 A
    ref = torch.stack([torch.linalg.matrix_power(p, t).diagonal() for t in range(1, k + 1)], 1)
    pe = random_walk_pe(edge_index, n, k)
    assert pe.dtype == torch.float32 and tuple(pe.shape) == (n, k)
    assert (pe.double() - ref).abs().max() < 1e-6
    # by hand: node 3 (a leaf of node 2) returns in two steps with probability 1/3, never in one or three
    assert pe[3, :3].tolist() == pytest.approx([0.0, 1 / 3, 0.0])
    assert pe[:, 0].abs().max() == 0  # no self-loops: no return after one step


def test_sign_flips_only_in_training() -> None:
    # no message passing: tokens = LayerNorm(node vector + W_pe (pe * s) + degree embedding), s = ±1 per eigenvector
    tok = tokenizer(num_layers=0, pe_dim=3)
    graphs = [Data(edge_index=path(5), num_nodes=5), Data(edge_index=cycle(6), num_nodes=6)]
    batch = tok.collate(graphs)
    deg = torch.cat([dense_adjacency(g.edge_index, g.num_nodes).sum(1) for g in graphs]).long()
    pe = batch.laplacian_eigenvector_pe

    def expected(signs: Tensor, rows: slice) -> Tensor:
        h = tok.node_token + tok.pe_proj(pe[rows] * signs) + tok.degree_embed(deg[rows])
        return tok.norm(h)

    patterns = [torch.tensor(s, dtype=torch.float32) for s in itertools.product((-1.0, 1.0), repeat=3)]
    rows = (slice(0, 5), slice(5, 11))
    with torch.no_grad():
        for _ in range(2):  # eval: the encoding as computed, every time
            out = tok(batch)
            for b, r in enumerate(rows):
                assert (out.embeddings[b, : r.stop - r.start] - expected(torch.ones(3), r)).abs().max() < 1e-6
        tok.train()
        seen: list[tuple[int, int]] = []
        for _ in range(24):
            out = tok(batch)
            found = []
            for b, r in enumerate(rows):
                got = out.embeddings[b, : r.stop - r.start]
                hits = [i for i, s in enumerate(patterns) if (got - expected(s, r)).abs().max() < 1e-5]
                assert len(hits) == 1  # exactly one sign pattern per graph explains the tokens
                found.append(hits[0])
            seen.append((found[0], found[1]))
    assert len({a for a, _ in seen}) > 2 and len({b for _, b in seen}) > 2  # fresh flips at every pass
    assert any(a != b for a, b in seen)  # drawn per graph
    with torch.no_grad():
        no_flip = tokenizer(num_layers=0, pe_dim=3, sign_flip=False).train()
        assert torch.equal(no_flip(batch).embeddings, no_flip(batch).embeddings)
        walks = tokenizer(positional_encoding="random_walk").train()
        assert torch.equal(walks(graphs).embeddings, walks(graphs).embeddings)  # random walks have no sign


# -- message passing ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conv", ["gin", "gcn", "gine"])
def test_one_layer_of_message_passing_by_hand(conv: str) -> None:
    edge_index = undirected([(0, 1), (1, 2), (2, 0), (2, 3)])
    n = 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g)
    edge_attr = torch.randn(edge_index.shape[1], 3, generator=g)
    extra = {"edge_dim": 3} if conv == "gine" else {}
    tok = tokenizer(
        in_channels=2,
        conv="gcn" if conv == "gcn" else "gin",
        num_layers=1,
        positional_encoding="none",
        max_degree=0,
        **extra,
    )
    layer = tok.convs[0]
    assert type(layer) is {"gin": GINConv, "gcn": GCNConv, "gine": GINEConv}[conv]
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr if conv == "gine" else None)
    with torch.no_grad():
        out = tok(data)
        h0 = tok.node_proj(x)
        z = tok.norms[0](h0).double()
        a = dense_adjacency(edge_index, n)
        if conv == "gcn":  # D̂^-1/2 (A + I) D̂^-1/2 z W^T + b
            a_hat = a + torch.eye(n, dtype=torch.float64)
            d = a_hat.sum(1).rsqrt()
            msg = (d[:, None] * a_hat * d[None, :]) @ (z @ layer.lin.weight.double().T) + layer.bias.double()
        else:  # MLP((1 + eps) z_i + sum over edges j -> i of z_j (GINE: ReLU(z_j + W e_ji)))
            if conv == "gin":
                agg = a @ z
            else:
                e = layer.lin(edge_attr).double()
                agg = torch.zeros_like(z).index_add_(0, edge_index[1], F.relu(z[edge_index[0]] + e))
            msg = layer.nn.double()((1 + layer.eps.double()) * z + agg)
        ref = tok.norm.double()(h0.double() + F.gelu(msg))
    assert out.mask.all() and tuple(out.embeddings.shape) == (1, n, 16)
    assert (out.embeddings[0].double() - ref).abs().max() < 1e-5


# -- batching: padding, the [CLS], mixed sizes ----------------------------------------------------------------------
def test_dense_batch_mask_and_the_models_cls() -> None:
    tok = tokenizer()
    lonely = Data(edge_index=torch.zeros(2, 0, dtype=torch.long), num_nodes=1)  # one node, no edges
    graphs = [Data(edge_index=cycle(3), num_nodes=3), lonely, Data(edge_index=path(5), num_nodes=5)]
    with torch.no_grad():
        out = tok(graphs)
    assert out.mask.tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4, [True] * 5]
    assert out.meta["num_nodes"].tolist() == [3, 1, 5]
    assert bool((out.embeddings[~out.mask] == 0).all())
    assert bool((out.embeddings[out.mask].abs().sum(-1) > 0).all())
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2}, modalities=["graph"]
    )
    tokens = model.eval().tokenize({"graph": graphs})["graph"]
    assert tokens.prefix == 1 and tuple(tokens.embeddings.shape) == (3, 6, 16)
    assert tokens.mask[:, 0].all()  # [CLS] first, then the nodes in order with the tokenizer's mask
    assert torch.equal(tokens.mask[:, 1:], out.mask)


@pytest.mark.parametrize(
    "config",
    [
        {"conv": "gin"},
        {"conv": "gcn", "positional_encoding": "random_walk"},
        {"conv": "gin", "in_channels": 4, "edge_dim": 2, "max_degree": 0},
        {"conv": "gcn", "in_channels": 4, "positional_encoding": "none"},
    ],
)
def test_graphs_of_3_and_200_nodes_in_one_batch(config: dict) -> None:
    tok = tokenizer(**config)
    g = torch.Generator().manual_seed(2)
    graphs = []
    for n, edge_index in ((3, cycle(3)), (200, random_graph(200, seed=3))):
        d = Data(edge_index=edge_index, num_nodes=n)
        if tok.config.in_channels:
            d.x = torch.randn(n, 4, generator=g)
        if tok.config.edge_dim:
            d.edge_attr = torch.randn(edge_index.shape[1], 2, generator=g)
        graphs.append(d)
    with torch.no_grad():
        both = tok(graphs)
        alone = [tok(d) for d in graphs]
    assert tuple(both.embeddings.shape) == (2, 200, 16)
    assert both.mask.sum(1).tolist() == [3, 200]
    assert (both.embeddings[0, :3] - alone[0].embeddings[0]).abs().max() <= 1e-5
    assert (both.embeddings[1] - alone[1].embeddings[0]).abs().max() <= 1e-5
    assert bool((both.embeddings[0, 3:] == 0).all())


def test_collate_computes_each_encoding_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = tokenizer_module.laplacian_pe

    def counting(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
        calls.append(num_nodes)
        return real(edge_index, num_nodes, k)

    monkeypatch.setattr(tokenizer_module, "laplacian_pe", counting)  # the name preprocess looks up
    tok = tokenizer()
    raw = [Data(edge_index=cycle(4), num_nodes=4), Data(edge_index=path(6), num_nodes=6)]
    ready = [tok.preprocess(g) for g in raw]
    assert calls == [4, 6]
    batch = tok.collate(ready)  # already encoded: kept as they are
    assert calls == [4, 6] and isinstance(batch, Batch) and batch.num_graphs == 2
    with torch.no_grad():
        encoded = tok(batch)
        slow = tok(Batch.from_data_list(raw))  # a Batch without the encoding is encoded per graph
    assert calls == [4, 6, 4, 6]
    assert torch.equal(encoded.embeddings, slow.embeddings)


# -- heads through the model -------------------------------------------------------------------------------------
def test_node_level_heads_read_nodes_and_graph_level_heads_read_cls() -> None:
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2},
        tokenizers={"graph": {"type": "graph", "conv": "gcn"}},
        heads={
            "family": {"type": "classification", "num_classes": 5, "modality": "graph"},
            "roles": {"type": "token_classification", "num_classes": 3, "modality": "graph"},
        },
    ).eval()
    small, big = Data(edge_index=cycle(3), num_nodes=3), Data(edge_index=random_graph(200, 4), num_nodes=200)
    inputs = {"graph": [small, big]}
    with torch.no_grad():
        encoded = model.encode(inputs)["graph"]
        out = model(inputs)
        alone = model({"graph": [small]})
    fam, roles = model.heads["family"], model.heads["roles"]
    assert tuple(out["family"].shape) == (2, 5) and tuple(out["roles"].shape) == (2, 200, 3)
    assert torch.allclose(out["family"], fam.fc(fam.norm(encoded.embeddings[:, 0])))  # the [CLS]
    assert torch.allclose(out["roles"], roles.fc(roles.norm(encoded.embeddings[:, 1:])))  # node i -> row i
    # packing: the small graph gives the same outputs next to a 200-node graph as alone
    assert (out["family"][0] - alone["family"][0]).abs().max() < 1e-4
    assert (out["roles"][0, :3] - alone["roles"][0]).abs().max() < 1e-4
    # node targets padded to 200; padding is ignored even where its target names a class
    target = torch.zeros(2, 200, dtype=torch.long)
    target[0, :3] = torch.tensor([2, -100, 1])
    target[1] = torch.randint(0, 3, (200,))
    with torch.no_grad():
        losses = model(inputs, {"roles": target, "family": torch.tensor([4, 0])}, mode="loss")
    logits = torch.cat([out["roles"][0, [0, 2]], out["roles"][1]])
    labels = torch.cat([torch.tensor([2, 1]), target[1]])
    assert torch.allclose(losses["loss_roles"], F.cross_entropy(logits, labels), atol=1e-6)
    assert torch.allclose(
        losses["loss_family"], F.cross_entropy(out["family"], torch.tensor([4, 0])), atol=1e-6
    )


# -- errors ----------------------------------------------------------------------------------------------------------
def test_error_messages() -> None:
    tok = tokenizer(in_channels=2)
    ring = torch.tensor([[0, 1, 2], [1, 2, 0]])
    cases = [
        (
            Data(x=torch.randn(3, 2), num_nodes=3),
            "graph: expected edge_index (2, E), got none",
        ),
        (
            Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 3]])),
            "graph: expected edge_index entries in [0, 3) (the number of nodes), got entries in [0, 3]",
        ),
        (
            Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, -1], [1, 2]])),
            "graph: expected edge_index entries in [0, 3) (the number of nodes), got entries in [-1, 2]",
        ),
        (
            Data(x=torch.randn(3, 2), edge_index=ring.float()),
            "graph: expected edge_index as a long tensor (2, E), got tensor of shape (2, 3) and dtype float32",
        ),
        (
            Data(x=torch.randn(3, 5), edge_index=ring),
            "graph: expected node features x as a float tensor (3, 2), got tensor of shape (3, 5) and dtype float32",
        ),
        (
            Data(x=torch.ones(3, 2, dtype=torch.long), edge_index=ring),
            "graph: expected node features x as a float tensor (3, 2), got tensor of shape (3, 2) and dtype int64",
        ),
        (
            torch.randn(3, 4),
            "graph: expected a torch_geometric Data/Batch or a list of Data, got tensor of shape (3, 4) and dtype float32",
        ),
        (
            [Data(x=torch.randn(3, 2), edge_index=ring), 3],
            "graph: expected a list of torch_geometric Data, got a list holding int",
        ),
        ([], "graph: expected at least one graph to collate, got an empty list"),
        (
            Data(x=torch.zeros(0, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)),
            "graph: expected graphs with at least one node, got a graph with 0 nodes",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(ModalityInputError) as err:
            tok(bad)
        assert str(err.value) == message
    with pytest.raises(ModalityInputError) as err:
        tokenizer()(Data(x=torch.randn(3, 2), edge_index=ring))
    assert str(err.value) == (
        "graph: expected graphs without node features (in_channels is 0), "
        "got x tensor of shape (3, 2) and dtype float32; set in_channels"
    )
    with pytest.raises(ModalityInputError) as err:
        tokenizer(edge_dim=2)(Data(edge_index=ring, num_nodes=3))
    assert str(err.value) == "graph: expected edge features edge_attr as a float tensor (3, 2), got NoneType"
    with pytest.raises(ModalityInputError) as err:
        tokenizer().preprocess({"edges": ring})
    assert str(err.value) == (
        "graph: expected a dict with 'edge_index' and optional 'x', 'edge_attr', 'num_nodes', got keys ['edges']"
    )
    # an encoding of the wrong width, and an already-encoded graph with a bad edge, are caught too
    wrong = Batch.from_data_list(
        [Data(edge_index=ring, num_nodes=3, laplacian_eigenvector_pe=torch.zeros(3, 4))]
    )
    with pytest.raises(ModalityInputError) as err:
        tokenizer()(wrong)
    assert str(err.value) == (
        "graph: expected laplacian_eigenvector_pe (3, 8), got tensor of shape (3, 4) and dtype float32"
    )
    encoded_bad = Data(
        edge_index=torch.tensor([[0], [7]]), num_nodes=3, laplacian_eigenvector_pe=torch.zeros(3, 8)
    )
    with pytest.raises(ModalityInputError, match=r"^graph: expected edge_index entries in \[0, 3\)"):
        tokenizer()([encoded_bad])
    with pytest.raises(ValueError, match="graph: conv='gcn' takes no edge features"):
        GraphTokenizer.default_config(conv="gcn", edge_dim=2)


# -- data sources ------------------------------------------------------------------------------------------------------
def test_karate_club_split_is_seeded_and_stratified() -> None:
    source = KarateClubDataSource.from_config(num_train=3, num_test=2)
    splits = source.splits()
    assert len(splits["train"]) == 3 and len(splits["test"]) == 2
    graph, y_train = splits["train"][0]
    _, y_test = splits["test"][0]
    assert graph.num_nodes == 34 and graph.edge_index.shape == (2, 156) and graph.x is None
    train, test = y_train != -100, y_test != -100
    assert not bool((train & test).any()) and bool((train | test).all())  # every member in exactly one split
    truth = torch.where(train, y_train, y_test)
    assert truth.bincount().tolist() == [13, 12, 4, 5]  # the four communities
    assert truth[train].bincount().tolist() == [6, 6, 2, 2]  # half of each (round half to even), at least one
    again = KarateClubDataSource.from_config(num_train=3, num_test=2).splits()["train"][0][1]
    other = KarateClubDataSource.from_config(num_train=3, num_test=2, seed=1).splits()["train"][0][1]
    assert torch.equal(again, y_train) and not torch.equal(other, y_train)
    majority = int(truth[train].bincount().argmax())
    assert source.baseline() == pytest.approx(float((truth[test] == majority).float().mean()))
    assert source.task() == {"type": "token_classification", "num_classes": 4}
    assert source.tokenizer_config() == {"type": "graph", "in_channels": 0}
    featured = KarateClubDataSource.from_config(node_features=True)
    assert featured.tokenizer_config()["in_channels"] == 34
    assert torch.equal(featured.splits()["train"][0][0].x, torch.eye(34))
    padded = source.collate_targets([torch.tensor([1, 2, 3]), torch.tensor([0])])
    assert padded.tolist() == [[1, 2, 3], [0, -100, -100]]


def test_graph_families_are_seeded_balanced_and_shaped_like_their_family() -> None:
    source = GraphFamiliesDataSource.from_config(num_train=100, num_test=20)
    train = source.splits()["train"]
    labels = [int(y) for _, y in train]
    assert sorted(labels) == sorted(list(range(5)) * 20)
    for g, y in train:
        n, ei = g.num_nodes, g.edge_index
        assert 6 <= n <= 20 and g.x is None
        assert bool((ei[0] != ei[1]).all())  # no self-loops
        a = dense_adjacency(ei, n)
        assert torch.equal(a, a.T)  # both directions of every edge
        deg = a.sum(1)
        family = GRAPH_FAMILIES[y]
        if family == "clique":  # all pairs minus the two removed noise edges
            assert int(a.sum()) == n * (n - 1) - 4
        elif family == "star":  # a hub adjacent to all others, at most two extra edges
            assert int(deg.max()) == n - 1 and n - 1 <= int(a.sum()) // 2 <= n + 1
        elif family == "cycle":
            assert n <= int(a.sum()) // 2 <= n + 2 and int(deg.min()) >= 2
        elif family == "tree":
            assert n - 1 <= int(a.sum()) // 2 <= n + 1
    again = GraphFamiliesDataSource.from_config(num_train=100, num_test=20).splits()["train"]
    assert torch.equal(again[7][0].edge_index, train[7][0].edge_index) and int(again[7][1]) == labels[7]
    assert source.task() == {"type": "classification", "num_classes": 5}
    assert source.baseline() == 0.2


def fit_and_score(
    source: KarateClubDataSource | GraphFamiliesDataSource, epochs: int, batch_size: int
) -> float:
    """Train a tiny model on the source's train split with AdamW; return its accuracy on the test split."""
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 32, "depth": 1, "num_heads": 2},
        tokenizers={"graph": source.tokenizer_config()},
        heads={"task": {**source.task(), "modality": "graph"}},
    )
    tok = model.tokenizers["graph"]
    splits = {k: [(tok.preprocess(g), y) for g, y in v] for k, v in source.splits().items()}

    def batches(data: list, order: list[int]) -> list[tuple[Batch, Tensor]]:
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return [
            (tok.collate([data[j][0] for j in c]), source.collate_targets([data[j][1] for j in c]))
            for c in chunks
        ]

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for graphs, y in batches(splits["train"], torch.randperm(len(splits["train"])).tolist()):
            loss = model({"graph": graphs}, {"task": y}, mode="loss")["loss_task"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for graphs, y in batches(splits["test"], list(range(len(splits["test"])))):
            encoded = model.encode({"graph": graphs})
            pred = model.heads["task"].predict(model.head_outputs(encoded)["task"])
            y = model.heads["task"].align_target(encoded["graph"], y)
            known = y != -100
            correct += int((pred[known] == y[known]).sum())
            total += int(known.sum())
    return correct / total


def test_data_sources_are_learnable() -> None:
    families = GraphFamiliesDataSource.from_config(num_train=200, num_test=100)
    assert fit_and_score(families, epochs=4, batch_size=25) >= 0.7  # chance 0.2
    karate = KarateClubDataSource.from_config(num_train=32)
    assert fit_and_score(karate, epochs=1, batch_size=4) >= karate.baseline() + 0.2  # baseline 0.39
