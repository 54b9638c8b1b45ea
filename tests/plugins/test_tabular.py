"""tabular plugin: schema fitting, exact index mapping for unseen and missing values, FT-Transformer tokens."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.core.source import DemoSettings, SampleList
from polymodal.data import ArrayDataset, from_table
from polymodal.model.config import ModelConfig
from polymodal.plugins.tabular import (
    MISSING_INDEX,
    UNKNOWN_INDEX,
    BreastCancerDataSource,
    TabularTokenizer,
    TabularTokenizerConfig,
    WineDataSource,
    category_key,
    encode_table,
)
from polymodal.testing import check_data_source, check_tokenizer


@pytest.fixture
def train_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0, 30.0, np.nan, 50.0],
            "color": ["red", "blue", None, "red"],
            "rooms": [1, 2, 2, 3],
            "owner": [True, False, True, True],
            "target": [0, 1, 0, 1],
        }
    )


def test_discovered_through_entry_point() -> None:
    assert "tabular" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "tabular").status == "loaded"
    assert {"wine", "breast_cancer"} <= set(polymodal.list_data_sources())


def test_conformance() -> None:
    tokens = check_tokenizer("tabular")
    assert tuple(tokens.embeddings.shape) == (2, 8, 32) and tokens.mask.all()
    check_data_source("wine")
    check_data_source("breast_cancer")


def test_schema_fitted_from_a_dataframe(train_df: pd.DataFrame) -> None:
    cfg = TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"])
    assert [c.name for c in cfg.numeric] == ["age", "rooms"]
    assert [(c.name, c.categories) for c in cfg.categorical] == [
        ("color", ["blue", "red"]),
        ("owner", ["False", "True"]),
    ]
    age = cfg.numeric[0]
    assert math.isclose(age.mean, 100 / 3) and math.isclose(age.std, float(np.std([20.0, 30.0, 50.0])))
    assert cfg.numeric[1].mean == 2.0
    again = TabularTokenizerConfig.model_validate_json(cfg.model_dump_json())
    assert again == cfg
    forced = TabularTokenizerConfig.from_dataframe(train_df, categorical=["rooms"], exclude=["target"])
    assert [c.name for c in forced.categorical] == ["color", "rooms", "owner"]
    assert forced.categorical[1].categories == ["1", "2", "3"]
    rare = TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"], min_frequency=2)
    assert rare.categorical[0].categories == ["red"]


def test_unseen_and_missing_values_map_to_reserved_indices(train_df: pd.DataFrame) -> None:
    cfg = TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"])
    tok = TabularTokenizer(cfg.model_copy(update={"embed_dim": 8}))
    new = pd.DataFrame(
        {
            "age": [np.nan, 40.0, 20.0],
            "color": ["purple", None, "blue"],
            "rooms": [7, None, 1],
            "owner": [pd.NA, False, True],
        }
    )
    batch = tok.encode(new)
    # color: blue=2, red=3; owner: False=2, True=3
    assert batch["categorical"].tolist() == [[UNKNOWN_INDEX, MISSING_INDEX], [MISSING_INDEX, 2], [2, 3]]
    assert (UNKNOWN_INDEX, MISSING_INDEX) == (1, 0)
    num = batch["numeric"]
    assert math.isnan(num[0, 0]) and math.isnan(num[1, 1])
    assert num[1, 0].item() == pytest.approx((40 - 100 / 3) / cfg.numeric[0].std)
    assert num[0, 1].item() == pytest.approx((7 - 2) / cfg.numeric[1].std)
    assert category_key(2.0) == "2" and category_key(np.int64(2)) == "2" and category_key(2.5) == "2.5"
    assert (
        category_key(float("nan")) is None and category_key(None) is None and category_key(np.True_) == "True"
    )


def test_tokens_are_ft_transformer_embeddings(train_df: pd.DataFrame) -> None:
    cfg = TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"])
    tok = TabularTokenizer(cfg.model_copy(update={"embed_dim": 8}))
    batch = {
        "numeric": torch.tensor([[0.5, float("nan")]]),
        "categorical": torch.tensor([[UNKNOWN_INDEX, 3]]),
    }
    out = tok(batch)
    assert tuple(out.embeddings.shape) == (1, 4, 8) and out.mask.all()
    e, col = out.embeddings[0].detach(), tok.column_embedding.detach()
    w, b, miss = tok.numeric_weight.detach(), tok.numeric_bias.detach(), tok.missing_embedding.detach()
    table = tok.category_embedding.weight.detach()
    assert torch.allclose(e[0], 0.5 * w[0] + b[0] + col[0])
    assert torch.allclose(e[1], miss[1] + col[1])  # NaN -> the column's missing embedding
    assert torch.allclose(e[2], table[UNKNOWN_INDEX] + col[2])  # color's table starts at row 0
    assert torch.allclose(e[3], table[4 + 3] + col[3])  # owner's table starts after color's 4 rows
    out.embeddings.sum().backward()
    assert torch.isfinite(tok.numeric_weight.grad).all() and tok.missing_embedding.grad[1].abs().sum() > 0


def test_rows_preprocess_and_collate_like_the_whole_table(train_df: pd.DataFrame) -> None:
    cfg = TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"])
    tok = TabularTokenizer(cfg)
    whole = tok.encode(train_df)
    rows = tok.collate([tok.preprocess(row) for _, row in train_df.iterrows()])
    assert torch.equal(rows["categorical"], whole["categorical"])
    assert torch.allclose(rows["numeric"], whole["numeric"], equal_nan=True)
    as_dict = tok.preprocess({"age": 30.0, "color": "blue", "rooms": 2, "owner": False, "extra": "ignored"})
    as_array = tok.preprocess(np.array([30.0, 2, "blue", False], dtype=object))  # numeric, then categorical
    assert torch.equal(as_dict["categorical"], torch.tensor([2, 2])) and torch.equal(
        as_array["categorical"], torch.tensor([2, 2])
    )
    assert torch.allclose(as_dict["numeric"], as_array["numeric"])


def test_arrays_without_pandas_names() -> None:
    num = np.array([[1.0, 10.0], [3.0, 30.0]])
    cat = np.array([["a"], [None]], dtype=object)
    cfg = TabularTokenizerConfig.from_arrays(num, cat)
    assert cfg.column_names == ["num_0", "num_1", "cat_0"] and cfg.categorical[0].categories == ["a"]
    tok = TabularTokenizer(cfg.model_copy(update={"embed_dim": 4}))
    batch = tok.encode(np.concatenate([num, cat], axis=1))
    assert batch["numeric"].tolist() == [[-1.0, -1.0], [1.0, 1.0]] and batch["categorical"].tolist() == [
        [2],
        [0],
    ]


def test_without_schema_takes_unnamed_numeric_columns() -> None:
    tok = TabularTokenizer.from_config(embed_dim=4, max_columns=5)
    assert tuple(tok({"numeric": torch.randn(3, 5)}).embeddings.shape) == (3, 5, 4)
    assert tok.preprocess([1.0, 2.0]).get("numeric").tolist() == [1.0, 2.0]
    with pytest.raises(ModalityInputError) as err:
        tok({"numeric": torch.randn(3, 6)})
    assert str(err.value) == (
        "tabular: expected a dict {'numeric': (B, 1..5) float} (no schema: unnamed numeric columns), "
        "got numeric tensor of shape (3, 6) and dtype float32"
    )


def test_error_messages(train_df: pd.DataFrame) -> None:
    tok = TabularTokenizer(
        TabularTokenizerConfig.from_dataframe(train_df, exclude=["target"]).model_copy(
            update={"embed_dim": 4}
        )
    )
    with pytest.raises(ModalityInputError) as err:
        tok({"numeric": torch.zeros(1, 2), "categorical": torch.tensor([[4, 2]])})
    assert str(err.value) == (
        "tabular: expected category indices in [0, size) per column (sizes 4, 4; 0 = missing, 1 = unknown), got index 4"
    )
    with pytest.raises(ModalityInputError) as err:
        tok({"numeric": torch.tensor([[1.0, float("inf")]]), "categorical": torch.tensor([[2, 2]])})
    assert str(err.value) == "tabular: expected finite numeric values or NaN (missing), got 1 infinite values"
    with pytest.raises(
        ModalityInputError, match=r"^tabular: expected .*tokenizer.encode\(df\)\), got DataFrame"
    ):
        tok(train_df)
    with pytest.raises(ModalityInputError) as err:
        tok.encode(train_df.drop(columns=["color"]))
    assert (
        str(err.value)
        == "tabular: expected columns ['age', 'rooms', 'color', 'owner'], got a table without ['color']"
    )
    with pytest.raises(ModalityInputError) as err:
        tok.encode(train_df.assign(age=["x", 1, 2, 3]))
    assert str(err.value) == "tabular: expected numbers or missing values in numeric column 'age', got 'x'"
    with pytest.raises(ValueError, match="column names must be unique"):
        TabularTokenizerConfig(numeric=[{"name": "a"}], categorical=[{"name": "a"}])


def test_fitted_config_travels_with_the_model_config() -> None:
    source = WineDataSource.from_config()
    entry = source.tokenizer_config()
    assert "embed_dim" not in entry and len(entry["numeric"]) == 13
    cfg = ModelConfig.model_validate(
        {
            "encoder": {"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2},
            "tokenizers": {"table": entry},
            "heads": {"table": source.task()},
        }
    )
    again = ModelConfig.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again.tokenizers["table"] == cfg.tokenizers["table"]
    model = polymodal.build_model(cfg)
    tok = model.tokenizers["table"]
    x, _ = source.splits()["test"][0]
    features, _, _, order = source._load()
    raw = features[order[source.config.num_train]]  # the first test row, as scikit-learn ships it
    assert torch.allclose(tok.preprocess(raw)["numeric"], x["numeric"])  # same standardisation
    out = model({"table": tok.collate([x, x])})["table"]
    assert tuple(out.shape) == (2, 3)


def test_sklearn_sources() -> None:
    wine = WineDataSource.from_config(missing_rate=0.1)
    train = wine.splits()["train"]
    assert len(train) == 120 and len(wine.splits()["test"]) == 58
    numeric = torch.stack([train[i][0]["numeric"] for i in range(len(train))])
    assert 0.05 < numeric.isnan().float().mean() < 0.15
    clean = torch.stack([x["numeric"] for x, _ in WineDataSource.from_config().splits()["train"]])
    assert clean.mean(0).abs().max() < 1e-5 and (clean.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert wine.task() == {"type": "classification", "num_classes": 3}
    cancer = BreastCancerDataSource.from_config()
    assert cancer.task()["num_classes"] == 2 and 0.5 < cancer.baseline() < 0.75
    with pytest.raises(ValueError, match="at most 178"):
        WineDataSource.from_config(num_train=170, num_test=20).splits()


def test_sklearn_splits_are_rows_of_the_encoded_table() -> None:
    source = WineDataSource.from_config(seed=2)
    splits = source.splits()
    assert isinstance(splits["train"], SampleList) and len(splits["test"]) == 58
    x, _, y, order = source._load()
    encoded = encode_table(source.fitted_config(), x[order[120:178]])
    row, label = splits["test"][5]
    assert torch.equal(row["numeric"], encoded["numeric"][5]) and row["categorical"].shape == (0,)
    assert label.dtype == torch.long and label.shape == () and int(label) == int(y[order[125]])


def test_demo_settings() -> None:
    assert WineDataSource.demo == DemoSettings(
        source={"num_train": 120, "num_test": 58}, head={"pool": "mean"}
    )
    assert BreastCancerDataSource.demo is None  # the demo trains wine


# -- the user's tables and arrays -----------------------------------------------------------------------------------
def test_no_file_form() -> None:
    assert TabularTokenizer.file_extensions == ()
    with pytest.raises(ValueError) as err:
        TabularTokenizer.read_file("rows.csv", TabularTokenizer.default_config())
    assert str(err.value) == (
        "tabular: no file reader for this modality; pass reader=<path -> raw sample>; tables go through from_table"
    )


def test_dataset_from_table_is_from_tables_dataset(train_df: pd.DataFrame) -> None:
    frame = pd.concat([train_df] * 3, ignore_index=True).iloc[2:]  # an index that does not start at 0
    for options in ({}, {"columns": ["age", "color"]}, {"task": "regression"}):
        columns = options.get("columns")
        ours = TabularTokenizer.dataset_from_table(
            frame,
            modality="tabular",
            target="target",
            columns=columns,
            tokenizer=None,
            task=options.get("task"),
        )
        theirs = from_table(frame, "tabular", target="target", **options)
        assert isinstance(ours, ArrayDataset) and len(ours) == len(theirs) == 10
        assert torch.equal(ours.targets, theirs.targets) and ours.task == theirs.task
        assert ours.tokenizer_config == theirs.tokenizer_config
        assert torch.equal(ours[0][0]["categorical"], theirs[0][0]["categorical"])
    ours = TabularTokenizer.dataset_from_table(
        frame, modality="tabular", target="target", columns=None, tokenizer=None
    )
    assert [c["name"] for c in ours.tokenizer_config["numeric"]] == ["age", "rooms"]  # all but the target
    assert ours.targets.tolist() == [0, 1] + [0, 1, 0, 1] * 2 and ours.task.kind == "classification"
    schema = TabularTokenizerConfig.from_dataframe(train_df[["age", "rooms"]]).model_dump(
        exclude={"type", "embed_dim"}
    )
    given = TabularTokenizer.dataset_from_table(
        frame, modality="tabular", target=["target"], columns=["age", "rooms"], tokenizer=schema
    )
    assert given.tokenizer_config["numeric"][0]["mean"] == pytest.approx(
        100 / 3
    )  # the given schema, not refitted
    assert given.targets.shape == (10, 1)  # a list of target columns
    with pytest.raises(ValueError) as err:
        TabularTokenizer.dataset_from_table(
            frame, modality="tabular", target=None, columns=None, tokenizer=None
        )
    assert (
        str(err.value)
        == "tabular: pass target=<column> (columns: ['age', 'color', 'rooms', 'owner', 'target'])"
    )
    with pytest.raises(KeyError, match=r"tabular: target column\(s\) \['label'\] not in the table"):
        TabularTokenizer.dataset_from_table(
            frame, modality="tabular", target="label", columns=None, tokenizer=None
        )


def test_config_for_data_fits_the_schema(train_df: pd.DataFrame) -> None:
    features = train_df.drop(columns=["target"])
    fitted = TabularTokenizer.config_for_data(features, "classification", ())
    assert set(fitted) == {"numeric", "categorical", "max_columns"}
    assert [c["name"] for c in fitted["numeric"]] == ["age", "rooms"] and fitted["numeric"][1]["mean"] == 2.0
    assert fitted["categorical"][0] == {"name": "color", "categories": ["blue", "red"]}
    # the config ArrayDataset fits on a DataFrame, and on a 2-D numeric array or tensor
    assert TabularTokenizerConfig(**fitted) == TabularTokenizerConfig.from_dataframe(features)
    assert ArrayDataset("tabular", features, train_df["target"]).tokenizer_config == (
        TabularTokenizerConfig(**fitted).model_dump(mode="json", exclude={"embed_dim"})
    )
    arr = np.array([[1.0, 10.0], [3.0, 30.0]])
    for data in (arr, torch.from_numpy(arr), arr.astype(np.int64)):
        got = TabularTokenizer.config_for_data(data, "regression", ())
        assert [(c["name"], c["mean"], c["std"]) for c in got["numeric"]] == [
            ("num_0", 2.0, 1.0),
            ("num_1", 20.0, 10.0),
        ]
        assert got["categorical"] == []
    # the user's own fields win: nothing is fitted; nor for data that is no table
    assert TabularTokenizer.config_for_data(features, "classification", {"max_columns"}) == {}
    assert TabularTokenizer.config_for_data(arr[0], "regression", ()) == {}
    assert TabularTokenizer.config_for_data(arr.astype(str), "regression", ()) == {}
    assert TabularTokenizer.config_for_data([[1.0, 2.0]], "regression", ()) == {}
