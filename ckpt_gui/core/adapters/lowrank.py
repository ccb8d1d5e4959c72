"""Numbers of ΔW = scale·B·A computed from the factors alone, never forming ΔW: its Frobenius
norm from the r×r Gram matrices, its singular values from QR factorisations of A and B and the
SVD of the small r×r core. Everything in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ckpt_gui.core.chunks import CancelCheck, drain, map_chunks, serial_torch

TOP_SINGULAR = 8  # singular values kept per module


@dataclass
class DeltaNumbers:
    norm: float  # ‖ΔW‖_F
    singular_values: list[float] = field(default_factory=list)  # the largest, descending
    stable_rank: float | None = None  # ‖ΔW‖_F² / σ_max², None when ΔW = 0
    zero_a: bool = False  # A is all zeros
    zero_b: bool = False  # B is all zeros
    nonfinite: bool = False  # A or B holds NaN or ±inf

    @property
    def untrained(self) -> bool:
        return self.zero_a or self.zero_b


def factor_matrices(
    a: torch.Tensor, b: torch.Tensor, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """A as an r×n matrix and B as an m×r matrix in float64 (a conv's kernel dimensions folded
    into A's columns, B's 1×1 kernel dropped). ΔW = scale·B·A up to a reshape or a transpose."""
    r = a.shape[0]
    a2 = a.reshape(r, -1).double()
    b2 = b.reshape(b.shape[0], r).double() if kind == "conv" else b.double()
    return a2, b2


def delta_numbers(a: torch.Tensor, b: torch.Tensor, scale: float, kind: str) -> DeltaNumbers:
    """‖ΔW‖_F, the top singular values and the stable rank of ``scale·B·A``."""
    # Small matrices: one thread, never an OpenMP team stalling on a shared machine.
    with serial_torch():
        return _delta_numbers(a, b, scale, kind)


def _delta_numbers(a: torch.Tensor, b: torch.Tensor, scale: float, kind: str) -> DeltaNumbers:
    a2, b2 = factor_matrices(a, b, kind)
    zero_a, zero_b = not bool(a2.any()), not bool(b2.any())
    if not (bool(a2.isfinite().all()) and bool(b2.isfinite().all())):
        return DeltaNumbers(math.nan, zero_a=zero_a, zero_b=zero_b, nonfinite=True)
    # ‖sBA‖² = s²·tr(AᵀBᵀBA) = s²·Σ (BᵀB ⊙ AAᵀ): two r×r products.
    gram = (b2.T @ b2) * (a2 @ a2.T)
    norm = abs(scale) * math.sqrt(max(0.0, float(gram.sum())))
    # Aᵀ = Qa·Ra, B = Qb·Rb, so sBA = s·Qb·(Rb·Raᵀ)·Qaᵀ: the singular values of the small core.
    ra, rb = _r_factor(a2.T), _r_factor(b2)
    sigma = torch.linalg.svdvals(rb @ ra.T) * abs(scale)
    values = [float(s) for s in sigma[:TOP_SINGULAR]]
    top = values[0] if values else 0.0
    stable = norm * norm / (top * top) if top > 0 else None
    return DeltaNumbers(norm, values, stable, zero_a, zero_b)


def _r_factor(m: torch.Tensor) -> torch.Tensor:
    """R of the QR factorisation of a tall matrix (LAPACK's geqrf: Householder, no Q formed)."""
    k = min(m.shape)
    return torch.geqrf(m)[0][:k].triu()


_ROW = 1024


def frobenius_norm(t: torch.Tensor, cancel: CancelCheck | None = None) -> float:
    """‖t‖_F, a chunk at a time over the chunk workers (a memory-mapped base weight is never
    copied whole): the norms of 1024-element rows in the tensor's float precision, their
    squares summed in float64 (relative error near 1e-9, at float32 speed)."""
    states = drain(map_chunks(t, 1 << 20, lambda _: [0.0], _add_squares, cancel))
    return math.sqrt(sum(state[0] for state in states))


def _add_squares(state: list[float], chunk: torch.Tensor) -> None:
    if chunk.dtype not in (torch.float32, torch.float64):
        chunk = chunk.float()  # bfloat16 and float16 values are exact in float32
    whole = chunk.numel() - chunk.numel() % _ROW
    part = 0.0
    if whole:
        rows = torch.linalg.vector_norm(chunk[:whole].view(-1, _ROW), dim=1)
        part = float(rows.double().square().sum())
    if not math.isfinite(part):  # float32 overflow in a row: redo this chunk in float64
        whole, part = 0, 0.0
    if whole < chunk.numel():
        part += float(torch.linalg.vector_norm(chunk[whole:], dtype=torch.float64)) ** 2
    state[0] += part
