"""SR2 for PyTorch: the optimizer, the paper's baselines, and sparsity tools."""

from . import pruning
from .optim import SR2, ProxGEN, ProxSGD, penalized_groups

__all__ = ["SR2", "ProxGEN", "ProxSGD", "penalized_groups", "pruning"]
