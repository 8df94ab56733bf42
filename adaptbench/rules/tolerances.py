"""Agreement tolerances, stated once (PyTorch's optimizer-test tolerances; README, "How agreement is proven").

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
    # Low precision: torch and JAX round after every op in bf16/fp16, and a step chains
    # up to ~8 roundings into one value (Adadelta's acc_delta: two roots, a quotient, a
    # square, two products and a sum), so the bound is 8 units of roundoff u: bf16
    # u = 2**-8 (measured worst 2.1e-2 on acc_delta), fp16 u = 2**-11.
    "bfloat16": Tolerance(rtol=8 * 2.0**-8, atol=1e-5),
    "float16": Tolerance(rtol=8 * 2.0**-11, atol=1e-5),
}


def tolerance(dtype) -> Tolerance:
    """The single-step tolerance for a dtype given as a name, NumPy, torch or JAX dtype."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].strip("'>")
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; known: {sorted(TOLERANCES)}") from None
