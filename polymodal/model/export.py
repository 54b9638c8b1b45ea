"""Export a built :class:`~polymodal.model.multimodal.MultimodalModel` as a ``torch.export`` program or an ONNX file.

What is exported is ``model(inputs, mode="tensor")`` from the tokenizers' batch tensors to the heads' outputs: the
tokenizers' forward (with their checks as in-graph assertions), modality embeddings and [CLS], the shared encoder
and the heads. What is not: ``preprocess`` and ``collate`` (decoding files, text to ids, resampling), which stay
Python on the CPU, as in a DataLoader; an exported program takes what ``collate`` returns (text as ``{"input_ids":
[B, N] long, "mask": [B, N] bool}``, images as ``[B, C, H, W]`` float, ...).

The traced forward runs the encoder *padded* (:func:`~polymodal.core.encoders.packing.pack` with ``padded=True``):
every input keeps its ``[B, N]`` positions and attention is one masked SDPA call per input, so the graph depends
on shapes only; its numbers equal the eager (packed) forward's within float rounding. Every dimension but the batch
is fixed at the example's size (pad text to a fixed ``N``, e.g. ``max_length``, for a fixed-shape program); the
batch size of each input is dynamic unless ``dynamic_batch=False``.

    program = export_program(model, {"image": images, "text": {"input_ids": ids, "mask": mask}})
    outputs = program.module()({"image": images, "text": {"input_ids": ids, "mask": mask}})  # {task: [B, ...]}
    path = export_onnx(model, example, "model.onnx")  # inputs "image", "text.input_ids", ...; outputs "image.output"

Shapes: inputs as each tokenizer takes them; outputs ``{task: head output}`` for the tasks whose inputs are in the
example (an output's rows are its input's batch).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

if TYPE_CHECKING:
    from torch.export import ExportedProgram

    from polymodal.model.multimodal import MultimodalModel

__all__ = ["TensorForward", "export_onnx", "export_program", "onnx_input_names", "onnx_inputs"]


class TensorForward(nn.Module):
    """``model(inputs, mode="tensor")`` as a module of tensors only: ``forward(inputs) -> {task: output}``.

    ``inputs`` is a dict ``{input_key: batch}`` of the tokenizers' batch tensors (a tensor, or a dict of tensors
    such as text's ``{"input_ids", "mask"}``). This is the module :func:`export_program` traces.
    """

    def __init__(self, model: MultimodalModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, Any]) -> dict[str, Tensor]:
        return dict(self.model(inputs, mode="tensor"))


def _check_example(model: MultimodalModel, example_inputs: Any) -> dict[str, Any]:
    if not isinstance(example_inputs, Mapping) or not example_inputs:
        raise TypeError(
            f"export: expected example inputs as a non-empty dict {{input_key: batch tensors}} for inputs among "
            f"{sorted(model.tokenizers)}, got {type(example_inputs).__name__}"
        )
    unknown = sorted(set(example_inputs) - set(model.tokenizers))
    if unknown:
        raise KeyError(f"export: expected input keys among {sorted(model.tokenizers)}, got unknown {unknown}")
    for key, batch in example_inputs.items():
        leaves, _ = pytree.tree_flatten(batch)
        bad = [leaf for leaf in leaves if not isinstance(leaf, Tensor)]
        if not leaves or bad:
            got = type(bad[0]).__name__ if bad else "no tensor"
            raise TypeError(
                f"export: {key}: expected the tokenizer's batch tensors (a tensor or a dict of tensors, what "
                f"model.tokenizers[{key!r}].collate(samples) returns; text as {{'input_ids', 'mask'}}), got {got} "
                "(preprocess and collate are not exported: run them before the program)"
            )
    return dict(example_inputs)


def _dynamic_shapes(example_inputs: Mapping[str, Any], dynamic_batch: bool) -> tuple[Any, ...] | None:
    if not dynamic_batch:
        return None
    from torch.export import Dim

    spec = pytree.tree_map(lambda t: {0: Dim.AUTO} if t.dim() else None, dict(example_inputs))
    return (spec,)


def _is_data_dependent(exc: BaseException) -> bool:
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    while exc is not None:
        if isinstance(exc, GuardOnDataDependentSymNode) or "data-dependent" in str(exc).split("\n", 1)[0]:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def export_program(
    model: MultimodalModel,
    example_inputs: Mapping[str, Any],
    *,
    dynamic_batch: bool = True,
    dynamic_shapes: Any = None,
) -> ExportedProgram:
    """``torch.export`` the model's tensor forward (:class:`TensorForward`) for inputs shaped like ``example_inputs``.

    Args:
        model: a built model; it is traced in eval mode (dropout off) and left in the mode it was in.
        example_inputs: ``{input_key: batch}``: the tokenizers' batch tensors, e.g. ``{"image": [B, 3, H, W],
            "text": {"input_ids": [B, N], "mask": [B, N]}}``. Inputs left out are not in the program (nor the heads
            that read them).
        dynamic_batch: make dimension 0 of every input dynamic (``torch.export.Dim.AUTO``: the batch of inputs that
            must agree, e.g. members of a fusion group, stays tied); otherwise every dimension is fixed.
        dynamic_shapes: ``torch.export``'s own ``dynamic_shapes`` for ``(inputs,)``, overriding ``dynamic_batch``.

    Returns:
        the ``ExportedProgram``; ``program.module()(inputs)`` gives ``{task: output}`` like ``model(inputs)``.
        The tokenizers' value checks are in-graph assertions (a ``RuntimeError`` naming the input when they fail).

    A tokenizer whose checks read tensor values in Python (``if bool(t.any()): raise ...``, rather than
    :func:`polymodal.core.tokenizer.check_values`) cannot be traced soundly by ``torch.export``; it is then traced
    with ``torch.export.draft_export``, which turns each such check into a runtime assertion of the outcome it had
    on the example, with every dimension fixed at the example's and a warning naming the check.
    """
    example = _check_example(model, example_inputs)
    shapes = dynamic_shapes if dynamic_shapes is not None else _dynamic_shapes(example, dynamic_batch)
    module = TensorForward(model)
    was_training = model.training
    model.eval()
    try:
        stderr = io.StringIO()  # torch prints the partial graph there on failure: kept for a real error only
        try:
            with _quiet("torch.fx.experimental.symbolic_shapes"), contextlib.redirect_stderr(stderr):
                return torch.export.export(module, (example,), dynamic_shapes=shapes, strict=False)
        except Exception as exc:
            if not _is_data_dependent(exc) or not hasattr(torch.export, "draft_export"):
                sys.stderr.write(stderr.getvalue())
                raise
            where = _user_frame(exc)
        warnings.warn(
            f"export: a check reads tensor values in Python ({where}); exported with torch.export.draft_export, "
            "which asserts at run time that it passes as it did on the example, for the example's shapes only (use "
            "polymodal.core.tokenizer.check_values in the tokenizer for a named in-graph check and a dynamic batch)",
            UserWarning,
            stacklevel=2,
        )
        with (
            _quiet("torch.export._draft_export", "torch.fx.experimental.symbolic_shapes"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")  # the draft report repeats the warning above
            return torch.export.draft_export(module, (example,))
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise torch loggers ``names`` to ERROR for the duration."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def _user_frame(exc: BaseException) -> str:
    """Where the check is: the call torch names in its message, else the innermost frame outside torch."""
    import traceback

    lines = str(exc).splitlines()
    for i, text in enumerate(lines):
        if "following call raised this error" in text and i + 1 < len(lines):
            return lines[i + 1].strip()
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f"{os.sep}torch{os.sep}" not in f.filename
    ]
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return lines[0] if lines else type(exc).__name__


def onnx_input_names(example_inputs: Mapping[str, Any]) -> list[str]:
    """The ONNX input names of :func:`export_onnx` for these inputs, in order: the input key, then the dict keys
    below it, joined by dots (``"image"``, ``"text.input_ids"``, ``"text.mask"``)."""
    paths, _ = pytree.tree_flatten_with_path(dict(example_inputs))
    return [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in paths]


def onnx_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``{onnx input name: numpy array}`` of a batch, to feed ONNX Runtime (``session.run(None, onnx_inputs(x))``)."""
    leaves, _ = pytree.tree_flatten(dict(inputs))
    return {name: leaf.detach().cpu().numpy() for name, leaf in zip(onnx_input_names(inputs), leaves)}


def export_onnx(
    model: MultimodalModel,
    example_inputs: Mapping[str, Any],
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> Path:
    """Write the model's tensor forward as an ONNX file (torch's dynamo exporter over :func:`export_program`).

    Inputs are named by :func:`onnx_input_names` (``"image"``, ``"text.input_ids"``, ``"text.mask"``), outputs
    ``"<task>.output"``; :func:`onnx_inputs` turns a batch into ONNX Runtime's feed. The in-graph checks are not kept (ONNX
    has no assertion). Needs ``onnx`` and ``onnxscript`` (``pip install "polymodal[export]"``, which brings
    ``onnxruntime`` too). Returns the path.
    """
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if missing:
        raise ImportError(
            f"export_onnx needs {' and '.join(missing)} (torch's ONNX exporter): pip install 'polymodal[export]'"
        )
    example = _check_example(model, example_inputs)
    program = export_program(model, example, dynamic_batch=dynamic_batch)
    with torch.no_grad():
        tasks = [f"{task}.output" for task in program.module()(example)]
    path = Path(path)
    onnx_program = torch.onnx.export(
        program,
        (example,),
        input_names=onnx_input_names(example),
        output_names=tasks,
        opset_version=opset_version,
        dynamo=True,
        verbose=False,
    )
    onnx_program.save(str(path))
    return path


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
