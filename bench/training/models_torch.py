"""The experiment's models in PyTorch: ``nn.Module``s built from the NumPy initial weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .models import PARAM_NAMES, check_model


class Model(nn.Module):
    """``linear``: ``X @ W + b``; ``mlp``: ``sigmoid(X @ W1 + b1) @ W2 + b2`` (weights ``(in, out)``)."""

    def __init__(self, model: str, init: dict[str, np.ndarray]):
        super().__init__()
        self.model = check_model(model)
        if tuple(init) != PARAM_NAMES[model]:
            raise ValueError(f"{model} needs parameters {PARAM_NAMES[model]}, got {tuple(init)}")
        for name, value in init.items():
            # A copy, so training never writes into the caller's NumPy arrays.
            self.register_parameter(name, nn.Parameter(torch.tensor(np.array(value))))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.model == "linear":
            return X @ self.W + self.b
        return torch.sigmoid(X @ self.W1 + self.b1) @ self.W2 + self.b2


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch."""
    return F.cross_entropy(logits, y)


@torch.no_grad()
def evaluate(model: Model, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` on a whole split."""
    logits = model(X)
    return float(loss_fn(logits, y)), int((logits.argmax(dim=1) == y).sum()) / len(y)


def numpy_params(model: Model) -> dict[str, np.ndarray]:
    return {name: p.detach().cpu().numpy().copy() for name, p in model.named_parameters()}
