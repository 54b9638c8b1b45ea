"""The tokenizer interface (Meta-Transformer's data-to-sequence ``f``) and input checks shared by plugins.

A tokenizer turns one modality's collated batch into :class:`Tokens` ``[B, N, D]`` with a mask. It owns its
positional scheme and its input checks; the non-learned steps (decoding, resampling, normalisation) live in
``preprocess`` (one sample, CPU, DataLoader workers) and ``collate`` (list of samples -> batch).

A tokenizer class also declares what the rest of polymodal needs to know about its modality, so that nothing
outside its plugin names the modality: the files one sample comes in (:attr:`Tokenizer.file_extensions`,
:meth:`Tokenizer.read_file`), how a table holds samples (:meth:`Tokenizer.dataset_from_table`), which task
targets imply (:meth:`Tokenizer.implied_task`) and which settings the data implies
(:meth:`Tokenizer.config_for_data`).

Checks and ``torch.compile`` / ``torch.export``: a check that reads a tensor's values on the host (``bool(t)``,
``int(t)``) breaks a compiled graph and stops an export. In eager mode the checks here raise
:class:`ModalityInputError` with the details; while a graph is traced (:func:`tracing`) the value checks become
in-graph assertions (:func:`check_values`: ``torch._assert_async``, a ``RuntimeError`` with the expectation in the
message when they fail) and the shape and dtype checks become guards of the traced graph.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig, ModalityInputError
from polymodal.core.tokens import Tokens

__all__ = [
    "MAX_INPUT_MAGNITUDE",
    "Tokenizer",
    "TokenizerConfig",
    "check_magnitude",
    "check_tensor",
    "check_values",
    "describe",
    "tracing",
]


#: Largest magnitude a float input may have: beyond it the squares in a LayerNorm or a variance overflow float32
#: (3.4e38) and tokens turn into NaN/Inf. Real data is far smaller; larger values are a unit mistake or garbage.
MAX_INPUT_MAGNITUDE = 1e15
# Formatted here: a format spec inside a traced call trips dynamo.
_MAX_MAGNITUDE_TEXT = f"{MAX_INPUT_MAGNITUDE:.0e}"


class TokenizerConfig(ComponentConfig):
    """Fields every tokenizer has."""

    embed_dim: int = Field(
        768,
        gt=0,
        description="Token width D. Inside a model it is taken from the encoder unless set explicitly.",
    )
    max_tokens: int = Field(
        8192,
        gt=0,
        description="Most tokens one sample may make (attention cost grows with their square); a larger input is "
        "refused with a clear error: shorten, crop or resize it, or raise this.",
    )


class Tokenizer(Component, nn.Module):
    """Base class of modality tokenizers.

    Subclasses set ``name`` (the registry name), ``modality`` (defaults to ``name``), ``config_class``, and
    implement ``forward(batch) -> Tokens`` and ``example_input``. Override ``preprocess`` and ``collate`` where the
    raw form users hold differs from the batch the tokenizer takes.
    """

    kind: ClassVar[str] = "tokenizer"
    modality: ClassVar[str] = ""
    config_class: ClassVar[type[TokenizerConfig]] = TokenizerConfig
    #: The raw batch form it takes, in a few words (Markdown), for `polymodal list modalities --markdown`.
    input_form: ClassVar[str] = ""
    #: Suffixes (lower case, with the dot) of files that hold one sample of this modality, for
    #: ``polymodal.data.from_folder``; empty when the modality has no one-file-per-sample form.
    file_extensions: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name and not cls.__dict__.get("modality"):
            cls.modality = cls.name

    def __init__(self, config: TokenizerConfig | dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.config = self.coerce_config(config)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(self, batch: Any) -> Tokens:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, batch: Any) -> Tokens:
        """``forward``, then the checks every tokenizer's output must pass: at most ``max_tokens`` real tokens per
        sequence, finite token values (a huge input can overflow in the projection). Under ``torch.compile`` /
        ``torch.export`` they are in-graph assertions (:func:`check_values`)."""
        out = super().__call__(batch)
        if isinstance(out, Tokens) and tracing():
            limit = self.config.max_tokens
            static_ok = isinstance(out.num_tokens, int) and out.num_tokens <= limit  # no op for a static N
            if not static_ok:
                check_values(
                    out.mask.sum(dim=1) <= limit,
                    self.modality,
                    f"at most {limit} tokens per sample (max_tokens)",
                )
            check_values(torch.isfinite(out.embeddings), self.modality, "inputs whose tokens are finite")
        elif isinstance(out, Tokens):
            self.check_token_count(int(out.lengths.max()) if out.batch_size else 0)
            if not bool(torch.isfinite(out.embeddings).all()):
                bad = int((~torch.isfinite(out.embeddings)).sum())
                raise self.fail(
                    "inputs whose tokens are finite",
                    f"{bad} NaN/Inf token values (input values too large for the tokenizer's projection?)",
                )
        return out

    def check_token_count(self, count: int, what: str = "") -> None:
        """Refuse a sample that makes more than ``max_tokens`` tokens (call it before expensive work when the count
        is known from the input's shape; ``what`` describes the input)."""
        limit = self.config.max_tokens
        if count > limit:
            raise self.fail(
                f"at most {limit} tokens per sample (max_tokens; shorten, crop or resize the input, or raise "
                "max_tokens)",
                f"{count} tokens" + (f" from {what}" if what else ""),
            )

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Any:
        """A valid batch of ``batch_size`` samples (used by the conformance checks and docs)."""
        raise NotImplementedError(f"{self.name}: example_input is not implemented")

    def invalid_examples(self) -> list[Any]:
        """Malformed batches that must raise :class:`ModalityInputError` (checked by ``polymodal.testing``)."""
        return []

    def preprocess(self, raw: Any) -> Any:
        """Turn one raw sample (the form users hold) into the per-sample form ``collate`` takes."""
        return raw

    def collate(self, samples: Sequence[Any]) -> Any:
        """Stack preprocessed samples into a batch; variable-length modalities pad and return a mask."""
        if len(samples) == 0:
            raise ModalityInputError(self.modality, "at least one sample to collate", "an empty list")
        shapes = {tuple(s.shape) for s in samples}
        if len(shapes) != 1:
            raise ModalityInputError(
                self.modality, "samples of one shape to stack", f"shapes {sorted(shapes)}"
            )
        return torch.stack(list(samples))

    # -- what the modality's data looks like (class-level: no weights are built) --------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """Read one file (of :attr:`file_extensions`) into the raw sample ``preprocess`` takes, set up for
        ``config`` (e.g. colour or greyscale, the number of frames); ``options`` are the reader's own.

        Runs in DataLoader workers (``functools.partial(cls.read_file, config=...)`` pickles). The default says
        that the modality has no file form."""
        raise ValueError(
            f"{cls.modality}: no file reader for this modality; pass reader=<path -> raw sample>"
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
    ) -> Any | None:
        """A dataset of the rows of ``frame`` (a pandas DataFrame) when a row holds a sample of this modality in
        some other form than a file path (a text, the row itself, a SMILES string, a series); ``None`` (the
        default) for a column of file paths (``"path"``), read lazily with :meth:`read_file`.

        ``modality`` and ``tokenizer`` are the user's tokenizer spec and overrides, ``target`` the target
        column(s), ``columns`` the sample column(s) or ``None``; ``options`` hold ``task``, ``class_names``,
        ``on_error`` and any options of this modality (e.g. forecasting windows), as given to
        ``polymodal.data.from_table``."""
        return None

    @classmethod
    def implied_task(cls, targets: Any) -> tuple[str, str] | None:
        """The task (``"forecasting"``, ``"regression"``, …) and the reason, when targets (a numpy array ``[N,
        ...]``) of this modality mean something the generic rules do not infer; ``None`` (the default) to let
        them decide (integers: classification, floats: regression, 0/1 columns: multi-label)."""
        return None

    @classmethod
    def config_for_data(cls, data: Any, task: str, explicit: Collection[str]) -> dict[str, Any]:
        """Tokenizer settings implied by a dataset's samples (``data``: the samples as the user gave them, or the
        first one) and its task kind, other than the fields in ``explicit`` (set by the user): e.g. a table's
        column schema, or mixing the channels of a series whose task is about the whole series. The default
        implies nothing."""
        return {}

    @torch.no_grad()
    def token_lengths(self, samples: Sequence[Any], chunk: int = 32) -> Tensor:
        """Real tokens of each sequence the samples make (``[len(samples)]``, or more rows for a tokenizer that
        makes several sequences per sample), for samples in the per-sample form ``collate`` takes, collated and
        tokenized ``chunk`` at a time. Collated batches are on the CPU: call it on a CPU tokenizer."""
        parts = [self(self.collate(list(samples[i : i + chunk]))).lengths for i in range(0, len(samples), chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def fail(self, expected: str, got: Any) -> ModalityInputError:
        """An input error for this modality (``raise self.fail('…', x)``); ``got`` is described if not a str."""
        return ModalityInputError(self.modality, expected, got if isinstance(got, str) else describe(got))


def describe(x: Any) -> str:
    """Short human description of an input for error messages."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {str(x.dtype).removeprefix('torch.')}"
    shape = getattr(x, "shape", None)
    if shape is not None and hasattr(x, "dtype"):
        return f"{type(x).__name__} of shape {tuple(shape)} and dtype {x.dtype}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of {len(x)} items"
    return type(x).__name__


def tracing() -> bool:
    """Whether ``torch.compile`` or ``torch.export`` is tracing the caller: a check that reads tensor values on the
    host breaks the graph there (compile) or fails (export); use :func:`check_values` for those."""
    return torch.compiler.is_compiling()


def check_values(
    ok: Tensor, modality: str, expected: str, got: Callable[[], str] | str = "other values"
) -> None:
    """Refuse an input unless the bool tensor ``ok`` is all ``True``.

    Eager mode: one host sync, and :class:`ModalityInputError` (``"<modality>: expected <expected>, got
    <got>"``; ``got`` may be a callable, called only on failure, to describe the bad values). While a graph is
    traced (:func:`tracing`): an in-graph assertion (``torch._assert_async``) that raises ``RuntimeError`` with
    ``"<modality>: expected <expected>"`` when the compiled or exported program runs on such values; no graph
    break, no host sync inside the graph.
    """
    if tracing():
        torch._assert_async(ok.all(), f"{modality}: expected {expected}, got other values")
        return
    if not bool(ok.all()):
        raise ModalityInputError(modality, expected, got() if callable(got) else got)


def check_tensor(
    x: Any,
    modality: str,
    shape: str,
    ndim: int | Sequence[int],
    *,
    floating: bool | None = True,
    finite: bool = True,
) -> Tensor:
    """Check a batch tensor and return it; raise :class:`ModalityInputError` naming the modality otherwise.

    Args:
        x: the input.
        modality: name used in the message.
        shape: the expected shape in words, e.g. ``"(B, 3, H, W)"``.
        ndim: allowed number of dimensions.
        floating: ``True`` requires a float dtype, ``False`` an integer dtype, ``None`` accepts both.
        finite: reject NaN and Inf.
    """
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not isinstance(x, Tensor):
        raise ModalityInputError(modality, f"a tensor {shape}", describe(x))
    if x.dim() not in dims:
        raise ModalityInputError(modality, f"a tensor {shape}", describe(x))
    if x.shape[0] == 0:
        raise ModalityInputError(modality, f"a non-empty batch {shape}", describe(x))
    if floating is True and not x.is_floating_point():
        raise ModalityInputError(modality, f"a floating-point tensor {shape}", describe(x))
    if floating is False and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise ModalityInputError(modality, f"an integer tensor {shape}", describe(x))
    if finite and x.is_floating_point() and tracing():
        check_values(
            x.abs() <= MAX_INPUT_MAGNITUDE,  # False for NaN and Inf too
            modality,
            "finite values of magnitude at most " + _MAX_MAGNITUDE_TEXT + " " + shape,
        )
    elif finite and x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ModalityInputError(modality, f"finite values {shape}", f"{bad} NaN/Inf values in {describe(x)}")
        check_magnitude(x, modality)
    return x


def check_magnitude(x: Tensor, modality: str, limit: float = MAX_INPUT_MAGNITUDE) -> Tensor:
    """Refuse float values beyond ``limit`` in magnitude (finite but huge values overflow to Inf/NaN inside the
    tokenizer or the encoder); return ``x``."""
    if x.is_floating_point() and tracing():
        text = _MAX_MAGNITUDE_TEXT if limit == MAX_INPUT_MAGNITUDE else str(limit)
        # ~(|x| > limit): NaN passes, as in eager mode (the finite check is separate)
        check_values(~(x.abs() > limit), modality, "values of magnitude at most " + text)
    elif x.is_floating_point() and x.numel():
        peak = float(x.detach().abs().max())
        if peak > limit:
            raise ModalityInputError(
                modality, f"values of magnitude at most {limit:.0e}", f"|x| up to {peak:.3g} in {describe(x)}"
            )
    return x
