"""The machinery of the conformance kit: named checks, their errors, and small helpers shared by the checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel

__all__ = ["Check", "ConformanceError", "run_checks"]


class ConformanceError(AssertionError):
    """A component that breaks the contract of its kind. The message names the component, the check and the
    problem: ``"encoder 'vit': padding_does_not_change_results: …"``."""

    def __init__(self, kind: str, name: str, check: str, problem: str) -> None:
        self.kind, self.name, self.check, self.problem = kind, name, check, problem
        super().__init__(f"{kind} {name!r}: {check}: {problem}")


@dataclass(frozen=True)
class Check:
    """One small check of one component, runnable on its own (``check()``), e.g. as a parametrized test case."""

    kind: str
    component: str
    name: str
    fn: Callable[[], None]

    def __call__(self) -> None:
        try:
            self.fn()
        except ConformanceError:
            raise
        except _Problem as exc:
            raise ConformanceError(self.kind, self.component, self.name, str(exc)) from None
        except Exception as exc:  # the component raised where the contract says it must not
            raise ConformanceError(
                self.kind, self.component, self.name, f"raised {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"{self.kind} {self.component!r}: {self.name}"


class _Problem(Exception):
    """Raised inside a check to report a broken contract (turned into a ConformanceError naming the check)."""


def problem(text: str) -> _Problem:
    return _Problem(text)


def unbuildable(kind: str, name: str, what: str, exc: Exception) -> Check:
    """The one check of a component that cannot be built from its examples: it fails, saying why."""

    def builds_from_its_examples() -> None:
        raise problem(f"cannot build it from {what}: {type(exc).__name__}: {exc}")

    return Check(kind, name, builds_from_its_examples.__name__, builds_from_its_examples)


def run_checks(checks: Iterator[Check]) -> None:
    for check in checks:
        check()


def round_trips(config: BaseModel) -> None:
    """The config must survive JSON and back unchanged."""
    again = type(config).model_validate(json.loads(config.model_dump_json()))
    if again != config:
        raise problem(f"config does not round-trip through JSON: {config!r} -> {again!r}")


def close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    if a.shape != b.shape:
        raise problem(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    err = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    scale = max(1.0, float(b.double().abs().max())) if b.numel() else 1.0
    if not err <= atol * scale:
        raise problem(f"{what}: differs by {err:.3g} (tolerance {atol * scale:.3g})")


def finite(x: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise problem(f"{what} has {int((~torch.isfinite(x)).sum())} NaN/Inf values")


def backward_reaches(params: list[torch.nn.Parameter], value: torch.Tensor, what: str) -> None:
    """``value.backward()`` must give finite, non-zero gradients to some of ``params``: the kit's own message when
    the output has no gradient path at all (torch would say 'element 0 of tensors does not require grad')."""
    if not params:
        raise problem(f"{what}: no learnable parameters")
    if not value.requires_grad:
        raise problem(f"{what}: the output does not depend on any learnable parameter (no gradient path)")
    value.backward()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or not any(bool(g.abs().sum() > 0) for g in grads):
        raise problem(f"{what}: no gradient reaches the parameters")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise problem(f"{what}: gradients are not finite")


def expect_error(
    run: Callable[[], Any], errors: tuple[type[BaseException], ...], must_name: str, what: str
) -> None:
    """``run()`` must raise one of ``errors`` whose message starts with or contains ``must_name``."""
    try:
        run()
    except errors as exc:
        if must_name not in str(exc):
            raise problem(
                f"{what}: the error must name {must_name!r}, got {type(exc).__name__}: {exc}"
            ) from None
    except Exception as exc:
        raise problem(
            f"{what}: raised {type(exc).__name__} instead of {' or '.join(e.__name__ for e in errors)}: {exc}"
        ) from None
    else:
        raise problem(f"{what}: was accepted")
