"""Draw the site's figures (run by hand after a change; the PNGs are committed, the docs build only reads them):

- ``packing.png``: how the shared encoder packs the real tokens of every input of a step into one stream and
  restricts attention to each sequence (block-diagonal), from real ``Tokens`` and ``polymodal.core.encoders.packing``;
- ``demo.png``: the figure ``polymodal demo --quick`` writes (copied from a run's output folder).

    .venv/bin/python docs/figures/make_figures.py            # packing.png
    .venv/bin/python docs/figures/make_figures.py --demo      # also runs the quick demo for demo.png (about a minute)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from polymodal.core.encoders.packing import pack
from polymodal.core.tokens import Tokens

HERE = Path(__file__).parent


def packing_figure(path: Path) -> Path:
    """Three inputs of one step (padded batches with masks) -> one stream of real tokens -> block-diagonal attention."""
    inputs = {"image": [6, 6], "text": [5, 2, 4], "audio": [3, 4]}
    tokens = []
    for name, lengths in inputs.items():
        n = max(lengths)
        mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
        tokens.append(Tokens(torch.zeros(len(lengths), n, 2), mask, name))
    _, layout = pack(tokens)
    segments = torch.repeat_interleave(torch.arange(len(layout.lengths)), torch.tensor(layout.lengths))
    attend = (segments[:, None] == segments[None, :]).float()
    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[0, 0])
    colours = {"image": "tab:blue", "text": "tab:orange", "audio": "tab:green"}
    y = 0
    for name, lengths in inputs.items():
        n = max(lengths)
        for length in lengths:
            for j in range(n):
                real = j < length
                ax.add_patch(Rectangle((j, -y), 0.9, 0.8, color=colours[name] if real else "0.9"))
            ax.text(-0.4, -y + 0.4, name, ha="right", va="center", fontsize=8)
            y += 1
        y += 0.5
    ax.set_xlim(-3, 7)
    ax.set_ylim(-y, 1.2)
    ax.axis("off")
    ax.set_title("inputs of one step: padded batches + masks (grey = padding)", fontsize=10)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(attend.numpy(), cmap=ListedColormap(["white", "tab:purple"]), interpolation="nearest")
    ax.set_title(
        f"packed stream: {layout.num_tokens} real tokens, {layout.num_segments} sequences\n"
        "attention only within each sequence (no padding FLOPs)",
        fontsize=10,
    )
    ax.set_xlabel("key token")
    ax.set_ylabel("query token")
    fig.tight_layout()
    fig.savefig(path)
    return path


def demo_figure(path: Path) -> Path:
    from polymodal.demo import run_demo

    with tempfile.TemporaryDirectory() as out:
        run_demo(out, preset="quick", device="cpu", log=lambda _: None)
        shutil.copyfile(Path(out) / "demo.png", path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the documentation's figures.")
    parser.add_argument("--demo", action="store_true", help="also run the quick demo for demo.png")
    args = parser.parse_args()
    print(packing_figure(HERE / "packing.png"))
    if args.demo:
        print(demo_figure(HERE / "demo.png"))


if __name__ == "__main__":
    main()
