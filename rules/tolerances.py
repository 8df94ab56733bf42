"""Agreement tolerances, stated once (DESIGN.md, agreement methodology).

Single-step tolerances follow PyTorch's own optimizer tests
(torch/testing/_internal/common_optimizers.py and torch.testing's defaults):
fp64 rtol 1e-7; fp32 rtol 1.3e-6, atol 1e-5; bf16/fp16 about 5e-3.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
    "float16": Tolerance(rtol=5e-3, atol=1e-5),
}


def tolerance(dtype) -> Tolerance:
    """The single-step tolerance for a dtype given as a name, NumPy, torch or JAX dtype."""
    name = str(dtype).rsplit(".", 1)[-1]
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {sorted(TOLERANCES)}") from None
