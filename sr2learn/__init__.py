"""sr2learn: SR2, a stochastic proximal method with adaptive quadratic regularisation,
for sparse (l1, l0, lp, k-sparse) models in scikit-learn and PyTorch."""

from .cross_validation import SR2ClassifierCV, SR2RegressorCV, alpha_max
from .diagnostics import ConvergenceDiagnostics
from .linear_model import SR2Classifier, SR2Regressor
from .penalties import L0, L1, L0Ball, Lp

__version__ = "0.1.0"

__all__ = [
    "ConvergenceDiagnostics",
    "L0",
    "L0Ball",
    "L1",
    "Lp",
    "SR2Classifier",
    "SR2ClassifierCV",
    "SR2Regressor",
    "SR2RegressorCV",
    "alpha_max",
    "__version__",
]
