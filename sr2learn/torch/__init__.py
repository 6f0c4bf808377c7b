"""SR2 for PyTorch: the optimizer, the paper's baselines, and sparsity tools.

Needs the ``[torch]`` extra: ``pip install "sr2learn[torch]"``.
"""

from .._extras import missing_extra

try:
    import torch  # noqa: F401
except ImportError as error:
    raise missing_extra("sr2learn.torch", error) from error

from . import pruning
from .optim import SR2, ProxGEN, ProxSGD, penalized_groups

__all__ = ["SR2", "ProxGEN", "ProxSGD", "penalized_groups", "pruning"]
