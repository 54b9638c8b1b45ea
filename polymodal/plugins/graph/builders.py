"""Graph datasets from what users hold: PyG graphs (:func:`from_graphs`) and SMILES strings (:func:`from_smiles`).

Both give a :class:`~polymodal.data.SampleDataset` of ``(graph, target)`` items whose tokenizer config has
``in_channels`` and ``edge_dim`` fitted on the first graph (:meth:`GraphTokenizer.config_for_data
<polymodal.plugins.graph.GraphTokenizer.config_for_data>`) unless ``tokenizer`` sets them: graphs are held in
memory (``ArrayDataset``); SMILES strings are turned into graphs (``x [atoms, 9]``, ``edge_attr [2·bonds, 3]``)
when read (``FileDataset``), so an invalid one raises naming it, or is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from polymodal.plugins.graph._pyg import Data
from polymodal.plugins.graph.smiles import smiles_to_graph

if TYPE_CHECKING:
    from polymodal.data.dataset import ArrayDataset, FileDataset, Task, TaskKind

__all__ = ["feature_sizes", "from_graphs", "from_smiles"]


def feature_sizes(data: Any, explicit: Collection[str] = ()) -> dict[str, int]:
    """``in_channels`` and ``edge_dim`` of a graph (``data``: one graph, or graphs whose first one is taken): the
    widths of its ``x`` and ``edge_attr`` (0 where it has none), other than the fields in ``explicit``."""
    if not isinstance(data, (Data, Mapping)):
        if data is None or len(data) == 0:
            return {}
        data = data[0]
    get = data.get if isinstance(data, Mapping) else lambda key: getattr(data, key, None)
    x, edge_attr = get("x"), get("edge_attr")
    if any(v is not None and len(getattr(v, "shape", ())) != 2 for v in (x, edge_attr)):
        return {}  # not features [N, F]: the tokenizer's checks say what is wrong
    fitted = {
        "in_channels": int(x.shape[1]) if x is not None else 0,
        "edge_dim": int(edge_attr.shape[1]) if edge_attr is not None else 0,
    }
    return {k: v for k, v in fitted.items() if k not in explicit}


def _graph_tokenizer(first: Any, tokenizer: Any) -> Any:
    """Graph tokenizer fields fitted on a graph (node and edge feature sizes), under ``tokenizer``'s: a dict of
    overrides wins over the fitted sizes; a config object (or name) is taken as it is."""
    fitted = feature_sizes(first)
    if isinstance(tokenizer, Mapping):
        return {**fitted, **tokenizer}
    return fitted if tokenizer is None else tokenizer


def from_graphs(
    graphs: Sequence[Any],
    targets: Any = None,
    *,
    task: TaskKind | Task | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> ArrayDataset:
    """A graph dataset from PyG graphs: a list of ``Data`` or a PyG dataset (e.g. ``TUDataset``), with
    ``targets`` or, by default, each graph's ``y`` (one value per graph). The tokenizer's ``in_channels`` and
    ``edge_dim`` are taken from the first graph's ``x`` and ``edge_attr`` unless ``tokenizer`` sets them."""
    from polymodal.data.dataset import ArrayDataset, tokenizer_config

    graphs = [graphs[i] for i in range(len(graphs))]
    if not graphs:
        raise ValueError("graph: expected at least one graph, got none")
    if targets is None:
        ys = [getattr(g, "y", None) for g in graphs]
        if any(y is None for y in ys):
            raise ValueError("graph: pass targets=..., or give every graph a 'y'")
        flat = [torch.as_tensor(y).reshape(-1) for y in ys]
        targets = torch.stack(flat) if flat[0].numel() > 1 else torch.cat(flat)
    for (
        g
    ) in graphs:  # node features as float, what the tokenizer takes (PyG datasets often hold them as long)
        if getattr(g, "x", None) is not None and not g.x.is_floating_point():
            g.x = g.x.float()
        if getattr(g, "edge_attr", None) is not None and not g.edge_attr.is_floating_point():
            g.edge_attr = g.edge_attr.float()
    config = tokenizer_config("graph", _graph_tokenizer(graphs[0], tokenizer))
    return ArrayDataset(config, graphs, targets, task=task, class_names=class_names)


def from_smiles(
    smiles: Sequence[str],
    targets: Any,
    *,
    task: TaskKind | Task | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: Any = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> FileDataset:
    """A molecule dataset from SMILES strings (RDKit: ``pip install 'polymodal[chem]'``), each turned into a graph
    by PyG's ``from_smiles`` when read (9 atom and 3 bond features). An invalid SMILES raises, naming it, or with
    ``on_error="skip"`` is dropped and counted, like an unreadable file."""
    from polymodal.data.dataset import FileDataset, tokenizer_config

    smiles = [str(s) for s in smiles]
    if not smiles:
        raise ValueError("graph: expected at least one SMILES string, got none")
    first = None
    for s in smiles:  # the first valid molecule gives the feature sizes
        try:
            first = smiles_to_graph(s)
            break
        except ValueError:
            continue
    config = tokenizer_config(
        "graph", _graph_tokenizer(first, tokenizer) if first is not None else tokenizer
    )
    return FileDataset(
        smiles, targets, config, smiles_to_graph, task=task, class_names=class_names, on_error=on_error
    )
