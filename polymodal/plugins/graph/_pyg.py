"""PyTorch Geometric, imported once for the graph plugin with its ``torch.jit.script`` deprecation silenced.

PyG scripts a few classes when first imported; torch >= 2.14 deprecates that, noisily. Every module of the plugin
takes PyG's graph containers (``Data``, ``Batch``), layers and utilities from here.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import GCNConv, GINConv, GINEConv
    from torch_geometric.utils import degree, to_dense_batch

__all__ = ["Batch", "Data", "GCNConv", "GINConv", "GINEConv", "degree", "to_dense_batch"]
