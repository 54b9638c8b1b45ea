"""point_cloud plugin: FPS and kNN against naive references, order and padding invariance, errors, data."""

from __future__ import annotations

import functools
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.core.source import DemoSettings, SampleList
from polymodal.plugins.point_cloud import (
    SHAPE_CLASSES,
    PointCloudTokenizer,
    ShapeCloudsDataSource,
    farthest_point_sample,
    knn_indices,
    normalize_cloud,
    read_points,
)
from polymodal.testing import check_data_source, check_tokenizer


def naive_fps(points: list[list[float]], num_samples: int) -> list[int]:
    """Pure-Python FPS on one cloud: start farthest from the centroid, then farthest from the picked set."""
    n = len(points)
    centroid = [sum(p[j] for p in points) / n for j in range(3)]

    def sq(a: list[float], b: list[float]) -> float:
        dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
        return dx * dx + dy * dy + dz * dz

    first = max(range(n), key=lambda i: (sq(points[i], centroid), -i))
    picked, dist = [first], [float("inf")] * n
    while len(picked) < num_samples:
        dist = [min(dist[i], sq(points[i], points[picked[-1]])) for i in range(n)]
        picked.append(max(range(n), key=lambda i: (dist[i], -i)))
    return picked


def tokenizer(**overrides: object) -> PointCloudTokenizer:
    torch.manual_seed(0)
    return PointCloudTokenizer.from_config(embed_dim=16, **overrides).eval()


def test_discovered_through_entry_point() -> None:
    assert "point_cloud" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "point_cloud").status == "loaded"
    assert polymodal.get("data source", "shape_clouds") is ShapeCloudsDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("point_cloud")
    assert tuple(tokens.embeddings.shape) == (2, 64, 32)
    assert tokens.mask.all()
    assert tuple(tokens.meta["centers"].shape) == (2, 64, 3)
    check_data_source("shape_clouds")


def test_fps_matches_naive_reference_with_padding() -> None:
    g = torch.Generator().manual_seed(1)
    counts = [50, 37, 9]
    x = torch.rand(3, 50, 3, dtype=torch.float64, generator=g)
    x[1, 37:] = 100.0  # padded points far away: they would be picked at once if the mask were ignored
    x[2, 9:] = -100.0
    mask = torch.arange(50)[None] < torch.tensor(counts)[:, None]
    idx, valid = farthest_point_sample(x, 12, mask)
    for b, n in enumerate(counts):
        expected = naive_fps(x[b, :n].tolist(), min(12, n))
        assert idx[b, : len(expected)].tolist() == expected
        assert valid[b].tolist() == [i < n for i in range(12)]
    assert int(idx.max()) < 50 and bool((idx[2] < 9).all())  # padded points never picked, even past 9 centres


def test_knn_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 80, 3, dtype=torch.float64, generator=g)
    centers = x[:, :7] + 0.01
    mask = torch.ones(2, 80, dtype=torch.bool)
    mask[1, 60:] = False
    idx = knn_indices(x, centers, 10, mask, chunk_elements=80 * 2 * 3)  # 3 centres per chunk
    for b, n in enumerate((80, 60)):
        for j in range(7):
            d = [sum((x[b, i, a] - centers[b, j, a]) ** 2 for a in range(3)).item() for i in range(n)]
            assert idx[b, j].tolist() == sorted(range(n), key=lambda i: d[i])[:10]


def test_knn_with_fewer_points_than_k_repeats_the_nearest() -> None:
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [50, 0, 0]]])
    mask = torch.tensor([[True, True, True, False]])
    idx = knn_indices(x, torch.tensor([[[0.9, 0, 0]]]), 5, mask)
    assert idx.tolist() == [[[1, 0, 2, 1, 1]]]
    idx = knn_indices(x[:, :2], torch.tensor([[[0.9, 0, 0]]]), 4)  # k > P
    assert idx.tolist() == [[[1, 0, 1, 1]]]


def test_tokens_do_not_depend_on_point_order() -> None:
    for grouping in ("single", "two_stage"):
        tok = tokenizer(num_groups=16, group_size=8, grouping=grouping, stage1_groups=64, stage1_group_size=8)
        x = torch.randn(2, 300, 3, generator=torch.Generator().manual_seed(3))
        perm = torch.randperm(300, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            a, b = tok(x), tok(x[:, perm])
        assert torch.equal(a.meta["centers"], b.meta["centers"])
        assert (a.embeddings - b.embeddings).abs().max() <= 1e-5


def test_padding_never_changes_a_cloud() -> None:
    tok = tokenizer(num_groups=16, group_size=8, in_features=2)
    g = torch.Generator().manual_seed(5)
    small, big, tiny = (
        torch.randn(40, 5, generator=g),
        torch.randn(120, 5, generator=g),
        torch.randn(6, 5, generator=g),
    )
    with torch.no_grad():
        alone = tok(small[None])
        batch = tok([big, small, tiny])  # a list of clouds is collated with a point mask
    assert batch.mask.sum(1).tolist() == [16, 16, 6]
    assert (batch.embeddings[1] - alone.embeddings[0]).abs().max() <= 1e-5
    assert bool((batch.embeddings[2, 6:] == 0).all())
    tiny_alone = tok(tiny[None])
    assert tiny_alone.mask.sum().item() == 6
    assert (tiny_alone.embeddings[0, :6] - batch.embeddings[2, :6]).abs().max() <= 1e-5


def test_collate_pads_and_masks() -> None:
    tok = tokenizer(in_features=1)
    batch = tok.collate([torch.ones(3, 4), torch.ones(5, 4)])
    assert tuple(batch["points"].shape) == (2, 5, 3) and tuple(batch["features"].shape) == (2, 5, 1)
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert float(batch["points"][0, 3:].abs().sum()) == 0.0


def test_preprocess_centres_and_scales_into_the_unit_sphere() -> None:
    tok = tokenizer(in_features=1)
    raw = np.random.default_rng(0).normal(size=(100, 4)) * 5 + 7
    x = tok.preprocess(raw)
    assert x.dtype == torch.float32 and tuple(x.shape) == (100, 4)
    assert x[:, :3].mean(0).abs().max() < 1e-6
    assert abs(x[:, :3].norm(dim=-1).max().item() - 1.0) < 1e-6
    assert torch.allclose(x[:, 3], torch.from_numpy(raw[:, 3]).float())  # features untouched
    same = tok.preprocess({"points": raw[:, :3], "features": raw[:, 3:]})
    assert torch.equal(x, same)
    assert torch.allclose(
        normalize_cloud(torch.tensor([[2.0, 0, 0], [0, 0, 0]])), torch.tensor([[1.0, 0, 0], [-1, 0, 0]])
    )


def test_error_messages() -> None:
    tok = tokenizer()
    with pytest.raises(ModalityInputError) as err:
        tok(torch.randn(2, 10, 4))
    assert str(err.value) == (
        "point_cloud: expected (B, P, 3) (3 coordinates + 0 features), got tensor of shape (2, 10, 4) and dtype float32"
    )
    with pytest.raises(ModalityInputError) as err:
        tok({"points": torch.randn(2, 8, 3), "mask": torch.zeros(2, 8, dtype=torch.bool)})
    assert (
        str(err.value)
        == "point_cloud: expected at least one real point per cloud, got a cloud whose mask is all False"
    )
    with pytest.raises(ModalityInputError) as err:
        tok(42)
    assert str(err.value) == "point_cloud: expected a tensor (B, P, 3) (3 coordinates + 0 features), got int"
    with pytest.raises(ModalityInputError, match=r"^point_cloud: expected finite values"):
        tok(torch.full((1, 8, 3), float("inf")))
    with pytest.raises(ModalityInputError) as err:
        tok.preprocess(np.zeros((5, 2)))
    assert str(err.value).startswith("point_cloud: expected one cloud (P, 3)")
    with pytest.raises(ModalityInputError, match="per-point features"):
        tokenizer(in_features=2)({"points": torch.randn(1, 8, 3)})


def test_two_stage_grouping_gives_num_groups_tokens() -> None:
    tok = tokenizer(grouping="two_stage", num_groups=8, group_size=4, stage1_groups=32, stage1_group_size=8)
    out = tok([torch.randn(100, 3), torch.randn(20, 3)])
    assert tuple(out.embeddings.shape) == (2, 8, 16)
    assert out.mask.all()
    out.embeddings.sum().backward()
    assert tok.stage1.first[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="stage1_groups"):
        PointCloudTokenizer.default_config(grouping="two_stage", stage1_groups=8, num_groups=16)


def test_torch_cluster_is_used_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_fps(src: torch.Tensor, batch: torch.Tensor, ratio: float, random_start: bool) -> torch.Tensor:
        # a reference FPS with torch_cluster's contract: starts at each example's first point, flat indices
        calls.append(ratio)
        out = []
        for b in batch.unique():
            rows = (batch == b).nonzero().squeeze(1)
            n = int(torch.ceil(torch.tensor(ratio * len(rows))))
            pts = src[rows]
            picked, dist = [0], torch.full((len(rows),), float("inf"), dtype=src.dtype)
            while len(picked) < n:
                dist = torch.minimum(dist, ((pts - pts[picked[-1]]) ** 2).sum(-1))
                picked.append(int(dist.argmax()))
            out.append(rows[torch.tensor(picked)])
        return torch.cat(out)

    monkeypatch.setitem(sys.modules, "torch_cluster", types.SimpleNamespace(fps=fake_fps))
    x = torch.rand(3, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    ours, _ = farthest_point_sample(x, 10)
    fast, _ = farthest_point_sample(x, 10, use_torch_cluster=True)
    assert len(calls) == 1
    assert torch.equal(ours, fast)


def test_shape_clouds_data() -> None:
    source = ShapeCloudsDataSource.from_config(num_train=14, num_test=7, min_points=100, num_points=120)
    splits = source.splits()
    labels = [int(y) for _, y in splits["train"]]
    assert sorted(labels) == sorted(list(range(7)) * 2)
    for cloud, _ in splits["train"]:
        assert 100 <= cloud.shape[0] <= 120 and cloud.shape[1] == 3
        assert cloud.mean(0).abs().max() < 1e-5 and abs(cloud.norm(dim=-1).max().item() - 1) < 1e-5
    again = ShapeCloudsDataSource.from_config(
        num_train=14, num_test=7, min_points=100, num_points=120
    ).splits()
    assert torch.equal(again["test"][3][0], splits["test"][3][0])
    assert source.task() == {"type": "classification", "num_classes": len(SHAPE_CLASSES)}
    assert source.baseline() == 1 / 7


def test_shape_clouds_are_drawn_by_generate_with_their_own_seeds() -> None:
    source = ShapeCloudsDataSource.from_config(num_train=14, num_test=7, min_points=100, num_points=120)
    splits = source.splits()
    assert isinstance(splits["train"], SampleList) and isinstance(splits["test"], SampleList)
    # the clouds drawn before generate() existed (seeds 2 * seed and 2 * seed + 1)
    assert [int(y) for _, y in splits["train"]][:10] == [4, 3, 0, 6, 2, 4, 2, 3, 1, 5]
    assert [c.shape[0] for c, _ in splits["train"]][:5] == [113, 112, 100, 104, 105]
    assert [int(y) for _, y in splits["test"]] == [0, 6, 1, 3, 5, 2, 4]
    assert [c.shape[0] for c, _ in splits["test"]][:5] == [102, 101, 100, 104, 102]
    first = splits["train"][0][0][:2]
    expected = [[-0.6971154808998108, -0.38057178258895874, -0.11668679863214493]]
    expected.append([-0.029481684789061546, -0.528754711151123, 0.147872656583786])
    assert torch.allclose(first, torch.tensor(expected), atol=1e-7)
    drawn = source.generate(7, 1)  # the test split's seed
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(drawn, splits["test"]))
    assert splits["train"][0][1].dtype == torch.long and splits["train"][0][1].shape == ()


def test_demo_settings() -> None:
    demo = ShapeCloudsDataSource.demo
    assert demo == DemoSettings(
        source={"num_points": 128, "min_points": 96},
        tokenizer={"num_groups": 8, "group_size": 32, "hidden_dim": 64, "mid_dim": 128, "pos_hidden_dim": 64},
        head={"pool": "mean"},
    )
    source = ShapeCloudsDataSource.from_config({**demo.source, "num_train": 7, "num_test": 7})
    clouds = [c for c, _ in source.splits()["train"]]
    assert all(96 <= len(c) <= 128 for c in clouds)
    tok = PointCloudTokenizer.from_config({**demo.tokenizer, "embed_dim": 16})
    assert tuple(tok(clouds).embeddings.shape) == (7, 8, 16)


# -- files -------------------------------------------------------------------------------------------------------
def _ascii_ply(points: np.ndarray, names: list[str], faces: list[tuple[int, int, int]] = ()) -> str:
    head = f"ply\nformat ascii 1.0\nelement vertex {len(points)}\n"
    head += "".join(f"property float {n}\n" for n in names)
    if faces:
        head += f"element face {len(faces)}\nproperty list uchar int vertex_indices\n"
    rows = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in points)
    return head + "end_header\n" + rows + "".join(f"3 {a} {b} {c}\n" for a, b, c in faces)


def test_file_extensions() -> None:
    assert PointCloudTokenizer.file_extensions == (
        ".ply",
        ".xyz",
        ".pts",
        ".txt",
        ".npy",
        ".obj",
        ".off",
        ".stl",
    )


def test_read_file_takes_features_when_the_config_has_in_features(tmp_path: Path) -> None:
    pts = np.arange(20, dtype=np.float32).reshape(5, 4) / 4  # x y z intensity, exact in float32
    (tmp_path / "p.ply").write_text(_ascii_ply(pts, ["x", "y", "z", "intensity"]))
    np.save(tmp_path / "p.npy", pts)
    xyz_only = PointCloudTokenizer.default_config()
    with_features = PointCloudTokenizer.default_config(in_features=1)
    for name in ("p.ply", "p.npy"):
        path = tmp_path / name
        plain = PointCloudTokenizer.read_file(path, xyz_only)
        full = PointCloudTokenizer.read_file(path, with_features)
        assert plain.dtype == np.float32 and np.array_equal(plain, pts[:, :3]), name
        assert np.array_equal(full, pts), name
        assert np.array_equal(full, read_points(path, features="all"))  # the raw reader
        assert np.array_equal(PointCloudTokenizer.read_file(path, with_features, features=None), pts[:, :3])
        assert np.array_equal(polymodal.data.reader_for(with_features)(path), full)  # as from_folder reads it
    # options go to read_points: a mesh is sampled on its surface, num_points of them
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    (tmp_path / "m.ply").write_text(_ascii_ply(square, ["x", "y", "z"], [(0, 1, 2), (0, 2, 3)]))
    sampled = PointCloudTokenizer.read_file(tmp_path / "m.ply", xyz_only, num_points=50, seed=3)
    assert sampled.shape == (50, 3) and np.array_equal(
        sampled, read_points(tmp_path / "m.ply", num_points=50, seed=3)
    )
    assert (
        float(np.abs(sampled[:, 2]).max()) == 0.0 and 0 <= sampled[:, :2].min() and sampled[:, :2].max() <= 1
    )
    # DataLoader workers get it as a partial, which pickles
    read = pickle.loads(pickle.dumps(functools.partial(PointCloudTokenizer.read_file, config=with_features)))
    assert np.array_equal(read(tmp_path / "p.ply"), pts)
