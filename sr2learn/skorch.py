"""skorch nets trained by SR2, and callbacks that write sparsity and SR2 diagnostics to
``net.history``.

``SR2NeuralNetClassifier`` / ``SR2NeuralNetRegressor`` are skorch's nets with
:class:`sr2learn.torch.SR2` as default optimizer. The penalty is configured like any
optimizer argument, so it can be grid-searched: ``optimizer__penalty`` ("l1", "l0",
"l1/2", "l2/3") and ``optimizer__alpha``; it applies to the conv / linear weights of the
module (:func:`sr2learn.torch.penalized_groups`), never to biases or normalisation
parameters. ``lr`` is SR2's first step size (sigma0 = 1 / lr); the default, None, lets
SR2 take it from the curvature of the first batch (and gives any other optimizer its own
default lr). ProxSGD and ProxGEN can be passed as ``optimizer=`` with the same split.
Floating inputs must be finite and are cast to the module's parameter dtype, as a
scikit-learn user expects of float64 data.

Needs the ``[torch]`` extra (torch and skorch): ``pip install "sr2learn[torch]"``.
"""

import numpy as np

from ._extras import missing_extra

try:
    import skorch  # noqa: F401
    import torch
except ImportError as error:
    raise missing_extra("sr2learn.skorch", error) from error

from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator

from .torch.optim import SR2, _PreconditionedProx, penalized_groups
from .torch.pruning import sparsity_report

__all__ = [
    "SR2NeuralNetClassifier",
    "SR2NeuralNetRegressor",
    "SparsityCallback",
    "SR2DiagnosticsCallback",
]


_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _finite_cast(data, name, dtype):
    """A floating NumPy array or tensor, checked finite and cast to the torch ``dtype``
    (None keeps its own); any other data as it is."""
    if isinstance(data, torch.Tensor) and data.is_floating_point():
        finite = bool(torch.isfinite(data).all())
        cast = data if dtype is None else data.to(dtype)
    elif isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating):
        finite = bool(np.isfinite(data).all())
        cast = data.astype(_NUMPY_DTYPES.get(dtype, data.dtype), copy=False)
    else:
        return data
    if not finite:
        # Fail before training, as scikit-learn estimators do; SR2 would reject every step.
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return cast


class SparsityCallback(Callback):
    """After each epoch, record the fraction of conv / linear weights that are exactly 0
    (``zero_fraction``) and that are at most ``small`` in magnitude (``small_fraction``)."""

    def __init__(self, small=1e-3):
        self.small = small

    def on_epoch_end(self, net, **kwargs):
        total = sparsity_report(net.module_, small=self.small)["total"]
        net.history.record("zero_fraction", total["zero_fraction"])
        net.history.record("small_fraction", total["small_fraction"])


class SR2DiagnosticsCallback(Callback):
    """After each epoch, record SR2's ``sigma``, the ``acceptance_rate`` of the epoch's
    steps and the number of ``sr2_steps`` so far (nothing for other optimizers)."""

    def initialize(self):
        self._seen = 0
        return self

    def on_train_begin(self, net, **kwargs):
        optimizer = getattr(net, "optimizer_", None)
        self._seen = optimizer.diagnostics.n_steps if isinstance(optimizer, SR2) else 0

    def on_epoch_end(self, net, **kwargs):
        optimizer = getattr(net, "optimizer_", None)
        if not isinstance(optimizer, SR2):
            return
        accepted = optimizer.diagnostics.history["accepted"][self._seen :]
        self._seen = optimizer.diagnostics.n_steps
        net.history.record("sigma", optimizer.sigma)
        net.history.record("acceptance_rate", float(accepted.mean()) if accepted.size else 0.0)
        net.history.record("sr2_steps", self._seen)


class _SR2NetMixin:
    _float_y = False  # whether y is a float target that follows X's checks and cast

    @property
    def _default_callbacks(self):
        return [
            *super()._default_callbacks,
            ("sparsity", SparsityCallback()),
            ("sr2_diagnostics", SR2DiagnosticsCallback()),
        ]

    def initialize_optimizer(self, *args, **kwargs):
        """Build the optimizer with penalised conv/linear weights and free other parameters."""
        named_parameters = self.get_all_learnable_params()
        opt_args, opt_kwargs = self.get_params_for_optimizer("optimizer", named_parameters)
        if opt_kwargs.get("lr", 0.0) is None:
            del opt_kwargs["lr"]  # the optimizer's own default (SR2: from the first batch)
        penalising = isinstance(self.optimizer, type) and issubclass(
            self.optimizer, (SR2, _PreconditionedProx)
        )
        if penalising and "param_groups" not in self.get_params_for("optimizer"):
            penalty = opt_kwargs.pop("penalty", "l1")
            alpha = opt_kwargs.pop("alpha", 0.0)
            opt_args = (penalized_groups(self.module_, penalty, alpha),)
        if penalising and issubclass(self.optimizer, SR2):
            opt_kwargs.setdefault("module", self.module_)
        self.optimizer_ = self.optimizer(*opt_args, **opt_kwargs)
        return self

    def get_dataset(self, X, y=None):
        """skorch's dataset, once floating X (and a regressor's y) is checked finite and
        cast to the module's parameter dtype (integer data, e.g. token ids, is left as
        it is)."""
        dtype = self._parameter_dtype()
        X = _finite_cast(X, "X", dtype)
        if self._float_y:
            y = _finite_cast(y, "y", dtype)
        return super().get_dataset(X, y)

    def _parameter_dtype(self):
        """The dtype of the module's first floating parameter; None before initialize."""
        module = getattr(self, "module_", None)
        params = module.parameters() if isinstance(module, torch.nn.Module) else ()
        return next((p.dtype for p in params if p.dtype.is_floating_point), None)

    def train_step(self, batch, **fit_params):
        """One optimizer step; for SR2 with the closure protocol of
        :class:`sr2learn.torch.SR2` (a gradient pass, then a loss-only trial pass)."""
        if not isinstance(self.optimizer_, SR2):
            return super().train_step(batch, **fit_params)
        accumulator = self.get_train_step_accumulator()
        Xi, yi = unpack_data(batch)

        def closure(backward=True):
            self._set_training(True)
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=True)
            if backward:
                self._zero_grad_optimizer()
                loss.backward()
                accumulator.store_step({"loss": loss, "y_pred": y_pred})
                self.notify(
                    "on_grad_computed",
                    named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch,
                    training=True,
                )
            return loss

        self.optimizer_.step(closure)
        return accumulator.get_step()


_DOC = """
    A skorch ``{base}`` trained by :class:`sr2learn.torch.SR2` by default.

    All of skorch's parameters apply. Differences: ``optimizer=SR2``; ``lr`` is SR2's
    first step size 1/sigma0, after which SR2 adapts sigma; the default ``lr=None`` sets
    sigma0 from the curvature of the first batch (10 extra gradient passes, once: see
    :class:`sr2learn.torch.SR2`), so no learning rate needs tuning, and gives another
    ``optimizer`` its own default lr. skorch's LR schedulers have no effect on SR2
    (``param_groups[i]["lr"]`` is 1/sigma0, a float). The penalty is
    ``optimizer__penalty`` (default "l1") with strength ``optimizer__alpha`` (default 0,
    no penalty), on conv / linear weights only; and the callbacks ``sparsity``
    (:class:`SparsityCallback`) and ``sr2_diagnostics`` (:class:`SR2DiagnosticsCallback`)
    add ``zero_fraction``, ``small_fraction``, ``sigma`` and ``acceptance_rate`` to
    ``net.history`` after each epoch. The optimizer's full per-step trace is
    ``net.optimizer_.diagnostics``.

    Floating ``X`` ({y}) must be finite (ValueError otherwise, before any training
    step) and is cast to the dtype of the module's parameters, so float64 data from
    scikit-learn trains a float32 module.
"""


class SR2NeuralNetClassifier(_SR2NetMixin, NeuralNetClassifier):
    __doc__ = _DOC.format(base="NeuralNetClassifier", y="labels ``y`` are left as they are")

    def __init__(self, module, *args, optimizer=SR2, lr=None, **kwargs):
        super().__init__(module, *args, optimizer=optimizer, lr=lr, **kwargs)


class SR2NeuralNetRegressor(_SR2NetMixin, NeuralNetRegressor):
    __doc__ = _DOC.format(base="NeuralNetRegressor", y="and floating ``y``")
    _float_y = True

    def __init__(self, module, *args, optimizer=SR2, lr=None, **kwargs):
        super().__init__(module, *args, optimizer=optimizer, lr=lr, **kwargs)
