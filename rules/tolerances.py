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
    # One bf16 ulp is 2**-8 ~ 3.9e-3 relative and a step chains about six roundings, so
    # torch.testing's bf16 default (rtol 1.6e-2) rather than 5e-3; fp16 has 3 more bits.
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
    "float16": Tolerance(rtol=5e-3, atol=1e-5),
}


def tolerance(dtype) -> Tolerance:
    """The single-step tolerance for a dtype given as a name, NumPy, torch or JAX dtype."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].strip("'>")
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {sorted(TOLERANCES)}") from None
