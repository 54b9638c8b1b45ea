"""PatchTST head weights in the forecasting head: the original code flattens ``[d_model, patch_num]`` (D·N), ours
``[N, D]`` (N·D); :func:`convert_patchtst_head` permutes the columns so both forecast the same from the same tokens.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from polymodal.core.tokens import Tokens
from polymodal.plugins.time_series.head import ForecastingHead, convert_patchtst_head
from polymodal.plugins.time_series.revin import SeriesMeta

B, C, N, D, H = 3, 4, 5, 8, 6


class _FlattenHead(nn.Module):
    """PatchTST's ``Flatten_Head`` (yuqinie98/PatchTST, PatchTST_backbone.py): ``x [bs, nvars, d_model, patch_num]``
    -> ``nn.Flatten(start_dim=-2)`` -> ``nn.Linear(d_model * patch_num, target_window)``."""

    def __init__(self, individual: bool) -> None:
        super().__init__()
        self.individual = individual
        if individual:
            self.linears = nn.ModuleList(nn.Linear(D * N, H) for _ in range(C))
        else:
            self.linear = nn.Linear(D * N, H)
        self.flatten = nn.Flatten(start_dim=-2)

    def forward(self, x: Tensor) -> Tensor:
        if self.individual:
            return torch.stack([self.linears[i](self.flatten(x[:, i])) for i in range(C)], dim=1)
        return self.linear(self.flatten(x))


def _tokens() -> tuple[Tokens, Tensor]:
    """Channel-independent tokens ``[B·C, N, D]`` (no [CLS], no RevIN) and PatchTST's view ``[B, C, D, N]``."""
    x = torch.randn(B * C, N, D)
    meta = SeriesMeta(batch_size=B, channels=C, channel_mode="independent", revin=None)
    return Tokens.full(x, "time_series", series=meta), x.view(B, C, N, D).permute(0, 1, 3, 2)


@pytest.mark.parametrize("individual", [False, True])
def test_patchtst_head_weights_give_the_same_forecast(individual: bool) -> None:
    torch.manual_seed(0)
    ref = _FlattenHead(individual).eval()
    state = {f"model.head.{k}": v for k, v in ref.state_dict().items()}  # as in a PatchTST checkpoint
    handling = "individual" if individual else "shared"
    head = ForecastingHead.from_config(
        embed_dim=D, horizon=H, num_patches=N, channel_handling=handling, channels=C
    ).eval()
    tokens, theirs = _tokens()
    with torch.no_grad():
        expected = ref(theirs)  # [B, C, H]
        head.load_patchtst_head(state)
        assert (head(tokens) - expected).abs().max().item() <= 1e-5
        # the weights as they are (no permutation) forecast something else
        if not individual:
            head.fc.weight.copy_(ref.linear.weight)
            assert (head(tokens) - expected).abs().max().item() > 1e-2


def test_convert_patchtst_head_permutes_columns_and_checks_shapes() -> None:
    w = torch.arange(H * D * N, dtype=torch.float32).reshape(H, D * N)
    out = convert_patchtst_head({"head.linear.weight": w, "head.linear.bias": torch.zeros(H)}, N, D)
    # our column n·D + d is PatchTST's d·N + n
    n, d = 2, 3
    assert torch.equal(out["fc.weight"][:, n * D + d], w[:, d * N + n])
    with pytest.raises(
        ValueError, match=r"expected a PatchTST head weight \[H, d_model·patch_num\] = \[H, 8·4\]"
    ):
        convert_patchtst_head({"head.linear.weight": w}, N - 1, D)
    with pytest.raises(ValueError, match=r"expected one PatchTST Flatten_Head .*found: none"):
        convert_patchtst_head({"backbone.W_P.weight": w}, N, D)
    head = ForecastingHead.from_config(embed_dim=D, horizon=H, num_patches=N)
    individual = {
        f"head.linears.{i}.{k}": v for i in range(C) for k, v in nn.Linear(D * N, H).state_dict().items()
    }
    with pytest.raises(
        ValueError,
        match=r"holds an individual head \(4 channels\): configure channel_handling='individual', channels=4",
    ):
        head.load_patchtst_head(individual)
