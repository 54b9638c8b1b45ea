"""graph plugin, the user's data: from_graphs, from_smiles, a table's SMILES column, feature sizes fitted on a graph;
and the data sources' generated splits and demo settings."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch_geometric.data import Data

import polymodal
from polymodal.core.source import DemoSettings, SampleList
from polymodal.data import ArrayDataset, FileDataset, from_table
from polymodal.plugins.graph import (
    GraphFamiliesDataSource,
    GraphTokenizer,
    GraphTokenizerConfig,
    KarateClubDataSource,
    from_graphs,
    from_smiles,
    smiles_to_graph,
)

RING = torch.tensor([[0, 1, 2, 1, 2, 0], [1, 2, 0, 0, 1, 2]])
MOLECULES = ["CCO", "CCCO", "OCCO", "CC(O)C", "c1ccccc1", "c1ccncc1", "Cc1ccccc1", "c1ccoc1"]


def ring(**fields: torch.Tensor) -> Data:
    return Data(edge_index=RING, num_nodes=3, **fields)


# -- data sources -------------------------------------------------------------------------------------------------
def test_graph_families_are_drawn_by_generate_with_their_own_seeds() -> None:
    source = GraphFamiliesDataSource.from_config(num_train=20, num_test=5, seed=1)
    splits = source.splits()
    train, test = splits["train"], splits["test"]
    assert isinstance(train, SampleList) and isinstance(test, SampleList)
    # the graphs drawn before generate() existed (seeds 2 * seed and 2 * seed + 1)
    assert [int(y) for _, y in train][:10] == [3, 1, 4, 0, 0, 4, 2, 4, 1, 0]
    assert [g.num_nodes for g, _ in train][:10] == [6, 15, 6, 17, 12, 17, 6, 13, 20, 7]
    assert [g.edge_index.shape[1] for g, _ in train][:10] == [26, 32, 10, 38, 28, 36, 18, 28, 42, 16]
    assert train[0][0].edge_index[:, :6].tolist() == [[1, 1, 1, 1, 2, 2], [5, 3, 4, 0, 5, 3]]
    assert [int(y) for _, y in test] == [1, 0, 3, 4, 2] and [g.num_nodes for g, _ in test] == [
        16,
        12,
        16,
        13,
        8,
    ]
    drawn = source.generate(5, 3)  # the test split's seed
    assert all(
        torch.equal(a.edge_index, b.edge_index) and int(y) == int(z) for (a, y), (b, z) in zip(drawn, test)
    )
    assert train[0][1].dtype == torch.long and train[0][1].shape == ()


def test_karate_club_splits_share_the_one_graph() -> None:
    splits = KarateClubDataSource.from_config(num_train=3, num_test=2).splits()
    assert isinstance(splits["train"], SampleList) and len(splits["train"]) == 3 and len(splits["test"]) == 2
    assert splits["train"][0][0] is splits["train"][2][0] is splits["test"][1][0]
    assert torch.equal(splits["train"][0][1], splits["train"][2][1])
    assert not torch.equal(splits["train"][0][1], splits["test"][0][1])


def test_demo_settings() -> None:
    assert GraphFamiliesDataSource.demo == DemoSettings(head={"pool": "mean"})
    assert KarateClubDataSource.demo is None  # the demo trains graph_families


# -- feature sizes from a graph -----------------------------------------------------------------------------------
def test_config_for_data_fits_in_channels_and_edge_dim() -> None:
    graph = ring(x=torch.randn(3, 4), edge_attr=torch.randn(6, 2))
    assert GraphTokenizer.config_for_data(graph, "classification", ()) == {"in_channels": 4, "edge_dim": 2}
    assert GraphTokenizer.config_for_data([graph, ring()], "classification", ()) == {
        "in_channels": 4,
        "edge_dim": 2,
    }
    assert GraphTokenizer.config_for_data([ring(), graph], "regression", ()) == {
        "in_channels": 0,
        "edge_dim": 0,
    }
    assert GraphTokenizer.config_for_data(graph, "classification", {"edge_dim"}) == {"in_channels": 4}
    assert GraphTokenizer.config_for_data(graph, "classification", {"edge_dim", "in_channels", "conv"}) == {}
    as_dict = {"edge_index": RING, "x": torch.randn(3, 5)}  # the dict form preprocess takes
    assert GraphTokenizer.config_for_data([as_dict], "classification", ()) == {
        "in_channels": 5,
        "edge_dim": 0,
    }
    assert GraphTokenizer.config_for_data([], "classification", ()) == {}
    assert GraphTokenizer.config_for_data(None, "classification", ()) == {}


def test_from_graphs_fits_the_tokenizer_on_the_first_graph() -> None:
    graphs = [ring(x=torch.ones(3, 2, dtype=torch.long), y=torch.tensor([k % 2])) for k in range(4)]
    data = from_graphs(graphs)
    assert isinstance(data, ArrayDataset) and len(data) == 4
    assert data.tokenizer_config["in_channels"] == 2 and data.tokenizer_config["edge_dim"] == 0
    assert data.targets.tolist() == [0, 1, 0, 1] and data.task.kind == "classification"
    assert graphs[0].x.dtype == torch.float32  # long features are made float, what the tokenizer takes
    overridden = from_graphs(graphs, [1.5, 2.0, 0.5, 1.0], tokenizer={"in_channels": 2, "conv": "gcn"})
    assert overridden.tokenizer_config["conv"] == "gcn" and overridden.task.kind == "regression"
    given = GraphTokenizerConfig(in_channels=2, pe_dim=4)
    assert from_graphs(graphs, tokenizer=given).tokenizer_config["pe_dim"] == 4  # a config is taken as it is
    with pytest.raises(ValueError, match=r"graph: pass targets=\.\.\., or give every graph a 'y'"):
        from_graphs([ring()])
    with pytest.raises(ValueError, match="graph: expected at least one graph, got none"):
        from_graphs([])


# -- SMILES -------------------------------------------------------------------------------------------------------
def test_no_file_form() -> None:
    assert GraphTokenizer.file_extensions == ()
    with pytest.raises(ValueError) as err:
        GraphTokenizer.read_file("mol.sdf", GraphTokenizer.default_config())
    assert str(err.value) == (
        "graph: no file reader for this modality; pass reader=<path -> raw sample>; "
        "graphs through from_graphs or from_smiles"
    )


def test_from_smiles_fits_the_first_valid_molecule() -> None:
    pytest.importorskip("rdkit")
    graph = smiles_to_graph("CCO")
    assert (
        tuple(graph.x.shape) == (3, 9)
        and tuple(graph.edge_attr.shape) == (4, 3)
        and graph.x.is_floating_point()
    )
    data = from_smiles(["not a molecule", *MOLECULES[:3]], [0, 1, 0, 1], on_error="skip")
    assert isinstance(data, FileDataset) and len(data) == 3 and data.targets.tolist() == [1, 0, 1]
    assert (data.tokenizer_config["in_channels"], data.tokenizer_config["edge_dim"]) == (9, 3)
    with pytest.raises(ValueError, match="invalid SMILES 'C1CC'"):
        smiles_to_graph("C1CC")


def test_dataset_from_table_is_from_tables_dataset() -> None:
    pytest.importorskip("rdkit")
    frame = pd.DataFrame({"smiles": MOLECULES, "mol": MOLECULES[::-1], "aromatic": [0] * 4 + [1] * 4})
    for columns, options in ((None, {}), (["mol"], {"task": "regression"})):
        ours = GraphTokenizer.dataset_from_table(
            frame, modality="graph", target="aromatic", columns=columns, tokenizer=None, **options
        )
        theirs = from_table(frame, "graph", target="aromatic", columns=columns, **options)
        assert isinstance(ours, FileDataset) and len(ours) == len(theirs) == 8
        assert torch.equal(ours.targets, theirs.targets) and ours.task == theirs.task
        assert ours.tokenizer_config == theirs.tokenizer_config
        assert torch.equal(ours[0][0].edge_index, theirs[0][0].edge_index)
    assert ours.targets.tolist() == [0.0] * 4 + [1.0] * 4 and ours.task.kind == "regression"
    assert ours.source(0) == "c1ccoc1"  # the "mol" column: the molecules in reverse
    gcn = GraphTokenizer.dataset_from_table(
        frame, modality="graph", target="aromatic", columns=None, tokenizer={"conv": "gin", "pe_dim": 4}
    )
    assert (gcn.tokenizer_config["in_channels"], gcn.tokenizer_config["pe_dim"]) == (9, 4)
    bad = frame.assign(smiles=["CCO", "C1CC"] * 4)
    skipped = GraphTokenizer.dataset_from_table(
        bad, modality="graph", target="aromatic", columns=None, tokenizer=None, on_error="skip"
    )
    assert len(skipped) == 4
    with pytest.raises(ValueError) as err:
        GraphTokenizer.dataset_from_table(frame, modality="graph", target=None, columns=None, tokenizer=None)
    assert str(err.value) == "graph: pass target=<column> (columns: ['smiles', 'mol', 'aromatic'])"
    with pytest.raises(KeyError) as err:
        GraphTokenizer.dataset_from_table(
            frame, modality="graph", target="aromatic", columns=["a", "b"], tokenizer=None
        )
    assert err.value.args[0] == (
        "graph: expected one column of samples, got ['a', 'b']; columns: ['smiles', 'mol', 'aromatic']"
    )
    with pytest.raises(ValueError, match="pe_dim"):  # a bad tokenizer spec fails before the table is read
        GraphTokenizer.dataset_from_table(
            frame, modality="graph", target=None, columns=None, tokenizer={"pe_dim": 0}
        )
    assert polymodal.get("tokenizer", "graph") is GraphTokenizer
