"""SR2 and the paper's baselines (ProxSGD, ProxGEN) as ``torch.optim.Optimizer`` classes.

The penalties are the objects of :mod:`sr2learn.penalties` (one formula for NumPy and
torch) and the acceptance rule is :class:`sr2learn._rule.SR2Rule`, shared with the NumPy
solver.
"""

import math
import weakref

import torch
import torch.distributed as dist
from torch import nn

from .. import penalties
from .._rule import SR2Rule, isfinite, model_decrease, sr2_ratio, sr2_update, where
from ..diagnostics import ConvergenceDiagnostics
from ..penalties import Penalty, check_penalty

__all__ = ["SR2", "ProxSGD", "ProxGEN", "penalized_groups"]

_PENALISED_TYPES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


def penalized_groups(module, penalty="l1", alpha=1e-4):
    """Parameter groups for the optimizers: penalised conv/linear weights, the rest free.

    Weights of ``nn.Linear``, ``nn.Bilinear`` and every convolution go in the first group
    with ``penalty`` and ``alpha``; biases, normalisation parameters and any other
    parameter go in a second group with ``penalty=None`` (never penalised).

    Examples
    --------
    >>> from torch import nn
    >>> from sr2learn.torch import penalized_groups
    >>> groups = penalized_groups(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), "l0", 1e-3)
    >>> [len(g["params"]) for g in groups], groups[0]["penalty"], groups[1]["penalty"]
    ([1, 3], 'l0', None)
    """
    penalised_ids = set()
    for sub in module.modules():
        if isinstance(sub, _PENALISED_TYPES) and getattr(sub, "weight", None) is not None:
            penalised_ids.add(id(sub.weight))
    penalised, free = [], []
    for p in module.parameters():
        if p.requires_grad:
            (penalised if id(p) in penalised_ids else free).append(p)
    groups = [{"params": penalised, "penalty": penalty, "alpha": alpha}]
    if free:
        groups.append({"params": free, "penalty": None, "alpha": 0.0})
    return groups


def _group_penalty(group):
    name = group.get("penalty")
    if name is None:
        return None
    return check_penalty(name, group.get("alpha", 0.0))


def _positive(name, value):
    """``value`` as a float, or a ValueError naming the parameter."""
    try:
        ok = math.isfinite(value) and value > 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _with_grad(params, optimizer):
    """The parameters that have a gradient; every gradient must be dense."""
    ps = [p for p in params if p.grad is not None]
    for p in ps:
        if p.grad.layout != torch.strided:
            # The prox step moves every coordinate, so a sparse gradient would save nothing.
            raise RuntimeError(
                f"{optimizer} needs dense gradients (as do SR2, ProxSGD and ProxGEN), but the "
                f"parameter of shape {tuple(p.shape)} has a {p.grad.layout} gradient, e.g. "
                "from nn.Embedding(..., sparse=True): use sparse=False."
            )
    return ps


def _plain_penalty(penalty):
    """A penalty of :mod:`sr2learn.penalties` as a dict of plain values, which
    ``torch.load(weights_only=True)`` accepts; anything else as it is."""
    cls = type(penalty)
    if not isinstance(penalty, Penalty) or getattr(penalties, cls.__name__, None) is not cls:
        return penalty  # a name, None, or a user's class (pickled as it is)
    plain = {"class": cls.__name__, "params": dict(penalty._params())}
    # A class whose parameters do not rebuild it stays an object.
    return plain if _rebuilt_penalty(plain) == penalty else penalty


def _rebuilt_penalty(value):
    """The inverse of :func:`_plain_penalty`."""
    if not isinstance(value, dict):
        return value
    cls = getattr(penalties, value["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, Penalty)):
        raise ValueError(f"Unknown penalty class {value['class']!r} in the state dict")
    return cls(**value["params"])


_PROTOCOL = (
    "SR2 calls closure(backward=True) for the gradient pass, which zeroes the gradients "
    "and calls loss.backward(), and closure(backward=False) for the loss-only trial pass, "
    "which must not call backward; both return the data loss as a scalar tensor (see the "
    "SR2 docstring)."
)


def _grad_marks(params):
    # A weak reference and the version counter tell whether a pass replaced or wrote a
    # gradient, without keeping an old gradient alive.
    return [None if p.grad is None else (weakref.ref(p.grad), p.grad._version) for p in params]


def _same_grad(p, mark):
    if mark is None:
        return p.grad is None
    return mark[0]() is p.grad and p.grad._version == mark[1]


def _checked_loss(loss, backward):
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        raise TypeError(
            f"closure(backward={backward}) must return the loss as a scalar tensor, got "
            f"{type(loss).__name__}. {_PROTOCOL}"
        )
    return loss


def _gradient_pass(closure, params):
    """closure(backward=True) with autograd on, checked to have written a gradient."""
    marks = _grad_marks(params)
    with torch.enable_grad():
        loss = _checked_loss(closure(backward=True), True)
    if all(p.grad is None or _same_grad(p, m) for p, m in zip(params, marks, strict=True)):
        raise RuntimeError(f"closure(backward=True) produced no gradient. {_PROTOCOL}")
    return loss


def _trial_pass(closure, params):
    """closure(backward=False) (under no_grad), checked to have left the gradients alone."""
    marks = _grad_marks(params)
    try:
        loss = closure(backward=False)
    except RuntimeError as err:
        if "does not require grad" not in str(err):
            raise
        # What loss.backward() raises under no_grad.
        raise RuntimeError(f"closure(backward=False) called backward. {_PROTOCOL}") from err
    if not all(_same_grad(p, m) for p, m in zip(params, marks, strict=True)):
        raise RuntimeError(f"closure(backward=False) changed the gradients. {_PROTOCOL}")
    return _checked_loss(loss, False)


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors]) if tensors else None


def _copy_flat_into(params, flat):
    torch._foreach_copy_(params, _views(flat, params))


def _norm(tensors):
    """The Euclidean norm of a list of tensors, as a float (a host read)."""
    norms = torch._foreach_norm(tensors)
    return math.sqrt(sum(float(n.double()) ** 2 for n in norms))


class _RNGSnapshot:
    """The CPU and CUDA generator states, so two forward passes see the same randomness."""

    def __init__(self, devices):
        self.cpu = torch.get_rng_state()
        self.cuda = {d: torch.cuda.get_rng_state(d) for d in devices if d.type == "cuda"}

    def restore(self):
        torch.set_rng_state(self.cpu)
        for device, state in self.cuda.items():
            torch.cuda.set_rng_state(state, device)


# sigma0 from the first batch: power iterations on finite differences of gradients.
_POWER_ITERATIONS = 10
_PROBE = 1e-2  # the finite-difference step, relative to max(||w||, 1)
_SIGMA_RANGE = 1e10  # the default clamp: sigma0 / 1e10 <= sigma <= sigma0 * 1e10


def _curvature(closure, params, rng, grad_scale):
    """||H u|| for u the top eigenvector of the Hessian H of the batch loss, by power
    iterations with H v ~ (g(w + h v) - g(w)) / h: ``_POWER_ITERATIONS`` gradient passes.

    Returns ``(curvature, ||g||, ||w||)`` as floats; the parameters, their gradients and
    the random state are left as they were found (the buffers are the caller's). The
    gradients may be scaled (a GradScaler's ``grad_scale``); the norms are not.
    """
    weights = [p.detach().clone() for p in params]
    grads = [p.grad.detach().clone() for p in params]
    probe = _PROBE * max(_norm(weights), 1.0)
    direction = grads
    if not _norm(grads) > 0.0:  # no gradient to start from: a fixed random direction
        generator = torch.Generator().manual_seed(0)
        direction = [torch.randn(p.shape, generator=generator).to(p) for p in params]
    curvature = 0.0
    try:
        for _ in range(_POWER_ITERATIONS):
            length = _norm(direction)
            if not (math.isfinite(length) and length > 0.0):
                break  # zero curvature along the last direction, or a non-finite gradient
            torch._foreach_copy_(params, weights)
            torch._foreach_add_(params, direction, alpha=probe / length)
            rng.restore()  # the same dropout masks as the gradient pass at w
            _gradient_pass(closure, params)
            moved = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            direction = torch._foreach_sub(moved, grads)
            curvature = _norm(direction) / probe / grad_scale
    finally:
        torch._foreach_copy_(params, weights)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
    return curvature, _norm(grads) / grad_scale, _norm(weights)


def _sigma0_from(curvature, grad_norm, weight_norm):
    """sigma0 = the curvature, but never a first step longer than max(||w||, 1), and 1
    when neither the curvature nor the gradient gives a scale."""
    floor = grad_norm / max(weight_norm, 1.0)
    sigma0 = max(curvature, floor) if math.isfinite(curvature) else floor
    return sigma0 if math.isfinite(sigma0) and sigma0 > 0.0 else 1.0


def _host_decides(device):
    """Whether a step reads its decision on the host. On a CPU that costs nothing and
    saves the rule's tensor arithmetic and the elementwise rollback of an accepted step;
    on an accelerator the decision stays on the device, so that a step never waits."""
    return device.type == "cpu"


_LOG_COLUMNS = ("iteration", "sigma", "rho", "accepted", "step_sq", "xi", "objective", "nnz",
                "clamped")  # fmt: skip
_LOG_CHUNK = 1024


class _StepLog:
    """SR2's per-step records, kept on the device where they are computed and moved to
    :class:`ConvergenceDiagnostics` in one transfer when read: recording a step never
    waits for the GPU (72 bytes a step stay on the device until then)."""

    def __init__(self):
        self.rows, self.chunks = [], []

    def append(self, row):
        self.rows.append(row)
        if len(self.rows) == _LOG_CHUNK:  # a short Python list, whatever the run length
            self.chunks.append(torch.stack(self.rows))
            self.rows = []

    def flush_into(self, diagnostics):
        if self.rows:
            self.chunks.append(torch.stack(self.rows))
        if not self.chunks:
            return
        table = torch.cat([chunk.cpu() for chunk in self.chunks]).tolist()
        self.rows, self.chunks = [], []
        for iteration, *values, clamped in table:
            diagnostics.record_step(int(iteration), 0, *values)
            diagnostics.n_sigma_clamps += int(clamped)


def _set_sigma0(group, sigma0):
    """sigma0, 1 / sigma0 as ``lr``, and the default clamp around it, in a param group."""
    sigma_min = group["sigma_min"] if group["sigma_min"] is not None else sigma0 / _SIGMA_RANGE
    sigma_max = group["sigma_max"] if group["sigma_max"] is not None else sigma0 * _SIGMA_RANGE
    sigma0 = min(max(sigma0, sigma_min), sigma_max)
    group.update(sigma=sigma0, lr=1.0 / sigma0, sigma_min=sigma_min, sigma_max=sigma_max)


def _views(flat, params):
    """Views of a flat vector shaped like ``params``."""
    views = torch.split(flat, [p.numel() for p in params])
    return [v.view_as(p) for v, p in zip(views, params, strict=True)]


def _trial_point(penalty, params, sigma, step):
    """w (flat, a copy), the trial point prox_{R/sigma}(w - g/sigma) (flat) and the
    step's terms [R(w), R(w+s), g's, ||s||^2] as a float64 tensor. ``sigma`` is a 0-dim
    tensor; ``step`` = 1 / sigma, a float or a tensor."""
    w, g = _flat(params), _flat([p.grad for p in params])
    trial = torch.addcdiv(w, g, sigma, value=-1.0)  # w - g / sigma
    if penalty is not None:
        trial = penalty.prox(trial, step)
    s = trial - w
    if penalty is None:
        r_w = r_trial = torch.zeros((), dtype=w.dtype, device=w.device)
    else:
        r_w, r_trial = penalty.value_array(w), penalty.value_array(trial)
    return w, trial, torch.stack([r_w, r_trial, torch.dot(g, s), torch.dot(s, s)]).double()


def _nonzeros(segments, device):
    """The number of nonzero penalised parameters, a float64 0-dim tensor on ``device``."""
    counts = [torch.count_nonzero(p).to(device) for penalty, ps in segments
              if penalty is not None for p in ps]  # fmt: skip
    total = torch.stack(counts).sum() if counts else torch.zeros((), device=device)
    return total.to(torch.float64)


class SR2(torch.optim.Optimizer):
    """SR2: proximal stochastic steps with adaptive quadratic regularisation sigma.

    One ``step(closure)`` does one gradient pass at w and one loss-only pass at the trial
    point w + s on the same batch, with s = prox_{R/sigma}(w - g/sigma) - w; the step is
    kept when (F_B(w) - F_B(w+s)) / (R(w) - R(w+s) - g's) >= eta1, and sigma shrinks,
    stays or grows by the rule of :mod:`sr2learn._rule` (paper's Table 1).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups. A group may set ``penalty`` (a name "l1", "l0",
        "l1/2", "l2/3", a :class:`sr2learn.penalties.Penalty`, or None) and ``alpha``;
        :func:`penalized_groups` builds the usual split (conv/linear weights penalised,
        biases and normalisation parameters not).
    lr : float, default=None
        The first step size, a finite number > 0: ``sigma0 = 1 / lr`` when ``sigma0`` is
        not given. SR2 adapts sigma from then on. In networks sigma rarely shrinks
        (rho >= eta2 is rare on a minibatch), so a given lr plays the role of SGD's
        learning rate; by default SR2 picks it from the first batch (below).
    sigma0 : float, default=None
        Initial sigma, a finite number > 0; wins over ``lr``. With neither, the first
        ``step`` sets sigma0 from the curvature of the first batch's loss (Notes).
    penalty, alpha : default "l1", 0.0
        Defaults for groups that do not set them.
    eta1, eta2, gamma1, gamma3 : float
        The acceptance thresholds and sigma factors (Table 1 of the paper).
    sigma_min, sigma_max : float, default=None
        Clamp of sigma; None means ``sigma0 / 1e10`` and ``sigma0 * 1e10``.
    module : torch.nn.Module, default=None
        The model. When given, its buffers (e.g. BatchNorm running statistics) are
        restored on a rejected step, and neither the trial pass nor the first batch's
        curvature estimate moves them; without it buffers are left to the forward passes.

    Attributes
    ----------
    sigma : float or None
        The current sigma (None until the first step estimates sigma0); the next step
        tries the step size 1 / sigma.
    diagnostics : ConvergenceDiagnostics
        The per-step trace (sigma, rho, acceptance, ...), moved from the device when read.

    Raises
    ------
    ValueError
        At construction, for a ``lr`` or ``sigma0`` that is not a finite number > 0, an
        unknown penalty name, or thresholds the rule rejects.
    RuntimeError
        In ``step``, for a closure that breaks the protocol below, or a sparse gradient
        (e.g. ``nn.Embedding(..., sparse=True)``): the prox step moves every coordinate,
        so SR2 needs dense gradients.

    Notes
    -----
    **Closure protocol.** ``step`` needs a closure ``closure(backward=True)`` that runs
    the forward pass on the current batch, returns the *data* loss f_B (without the
    penalty, which the optimizer adds) as a scalar tensor, and calls ``loss.backward()``
    (after zeroing the gradients) only when ``backward`` is true. The optimizer calls it
    once with ``backward=True`` at w and once with ``backward=False`` (under
    ``torch.no_grad()``) at w + s, with the random state reset in between, so dropout
    draws the same masks in both passes. Whatever the gradient pass leaves in ``.grad``
    is the g of the step: gradient clipping (``torch.nn.utils.clip_grad_norm_`` after
    ``loss.backward()``) clips the step, while the trial pass only returns the loss. The
    closure may run under ``torch.autocast`` and call a ``torch.compile``-d module.

    Rules kept: the prox and R(w) cover exactly the same parameters; a rejected step
    restores the parameters, the module's buffers and leaves no other trace; a step
    whose gradient is not finite (inf or NaN in g, e.g. a float16 overflow) is skipped:
    parameters and sigma stay as they were, as ``GradScaler.step`` skips
    ``optimizer.step()``. sigma is stored in the param groups, so ``state_dict()`` /
    ``load_state_dict()`` resume the same trajectory; ``param_groups[i]["lr"]`` is the
    first step size 1 / sigma0, a float that SR2 never reads (LR schedulers have no
    effect: sigma adapts by itself). A closure that never writes a gradient in the first
    pass, or calls backward or changes the gradients in the trial pass, gets a
    RuntimeError (checked on the gradients' version counters, at no extra pass); the
    step it aborts leaves the parameters and buffers as they were.

    **No host synchronisation.** On a GPU (any device but the CPU) the step keeps sigma
    and the quantities of the rule as tensors on the device and decides with
    ``torch.where``: a step never waits for the device (unless the closure does, e.g.
    ``loss.item()``), and the per-step trace reaches ``diagnostics`` when it is read, in
    one transfer. On a CPU, where reading a value costs nothing, the same rule runs on
    floats and a rejected step alone copies w back (the same steps, fewer operations).

    **sigma0 from the first batch** (``lr`` and ``sigma0`` None): at the first step,
    sigma0 is the largest curvature of the batch loss at w, estimated by
    ``_POWER_ITERATIONS`` = 10 power iterations on Hessian-vector products taken as
    finite differences of gradients, H v ~ (g(w + h v) - g(w)) / h with
    h = 0.01 max(||w||, 1), starting from v = g. That costs 10 extra gradient passes
    (closure(backward=True) at w + h v, with the same random state as the first pass),
    once; the parameters, gradients, module buffers and random state are restored, and
    the first step then proceeds with that sigma0. Finite differences need no second
    derivatives, so the estimate works with any module, under autocast and with
    torch.compile (which does not differentiate twice); on ReLU networks the secant
    over h also takes in the kinks that an exact Hessian-vector product ignores (an MLP
    on digits: 0.98 against 0.73). sigma0 is never below ||g|| / max(||w||, 1) (a first
    step no longer than the weights), which is also the fallback when the curvature is
    zero (a loss linear in the parameters) or not finite, and 1 when the gradient is
    zero too. A first batch whose gradient is not finite is skipped and the estimate
    waits for the next. Without ``module=``, the estimate's passes also update the
    running statistics of BatchNorm layers.

    **Mixed precision.** With ``torch.autocast(..., dtype=torch.float16)`` and a
    ``torch.amp.GradScaler``, the closure calls ``scaler.scale(loss).backward()`` and
    returns the unscaled ``loss``; ``step(closure, grad_scaler=scaler)`` unscales the
    gradients (``scaler.unscale_``, which records inf/NaN for ``scaler.update()``) and
    skips the step on an overflow; then call ``scaler.update()``. (``scaler.step`` does
    not take a closure: it would unscale before the gradient pass.) bfloat16 autocast
    needs no scaler.

    ``state_dict()`` stores a penalty object of :mod:`sr2learn.penalties` as a plain dict
    (class name and parameters) and ``load_state_dict`` rebuilds it, so a checkpoint
    loads with ``torch.load``'s default ``weights_only=True``.

    Under ``DistributedDataParallel`` the gradient is averaged by DDP's backward and the
    two batch losses are all-reduced here, so every rank takes the same decision and
    keeps identical parameters (and, with ``lr=None``, estimates the same sigma0).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sr2learn.torch import SR2, penalized_groups
    >>> torch.manual_seed(0) and None
    >>> model = nn.Linear(5, 1)
    >>> X, y = torch.randn(64, 5), torch.randn(64, 1)
    >>> opt = SR2(penalized_groups(model, "l1", 1e-2))
    >>> def closure(backward=True):
    ...     loss = nn.functional.mse_loss(model(X), y)
    ...     if backward:
    ...         opt.zero_grad()
    ...         loss.backward()
    ...     return loss
    >>> for _ in range(50):
    ...     loss = opt.step(closure)
    >>> bool(opt.diagnostics.history["accepted"].mean() > 0.5)
    True
    """

    def __init__(
        self,
        params,
        lr=None,
        *,
        sigma0=None,
        penalty="l1",
        alpha=0.0,
        eta1=SR2Rule.eta1,
        eta2=SR2Rule.eta2,
        gamma1=SR2Rule.gamma1,
        gamma3=SR2Rule.gamma3,
        sigma_min=None,
        sigma_max=None,
        module=None,
    ):
        lr = None if lr is None else _positive("lr", lr)
        if sigma0 is not None:
            sigma0 = _positive("sigma0", sigma0)
        elif lr is not None:
            sigma0 = _positive("1 / lr", 1.0 / lr)
        # else: estimated by the first step
        defaults = {
            # A float even before the estimate, for LR schedulers built before training.
            "lr": math.nan if sigma0 is None else 1.0 / sigma0,
            "penalty": penalty,
            "alpha": alpha,
            "sigma": sigma0,
            "eta1": eta1,
            "eta2": eta2,
            "gamma1": gamma1,
            "gamma3": gamma3,
            "sigma_min": sigma_min,
            "sigma_max": sigma_max,
            "n_steps": 0,
        }
        if sigma0 is not None:
            _set_sigma0(defaults, sigma0)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["penalty"] is not None and not isinstance(group["penalty"], Penalty):
                check_penalty(group["penalty"], group["alpha"])  # fail early on bad names
        self._rule()  # and on bad thresholds
        self.module = module
        self._diagnostics = ConvergenceDiagnostics(lipschitz_is_estimate=True)
        self._log = _StepLog()

    def __getstate__(self):
        # torch's Optimizer pickles only defaults, state and param_groups; keep the module
        # (pickled together with it, e.g. by skorch, it stays the same object) and the trace.
        state = super().__getstate__()
        state["module"] = self.module
        state["diagnostics"] = self.diagnostics
        return state

    def __setstate__(self, state):
        # Also called by load_state_dict with only state and param_groups: keep what is set.
        state = dict(state)
        if "diagnostics" in state:
            state["_diagnostics"] = state.pop("diagnostics")
        if "_diagnostics" not in state and not hasattr(self, "_diagnostics"):
            state["_diagnostics"] = ConvergenceDiagnostics(lipschitz_is_estimate=True)
        if "module" not in state and not hasattr(self, "module"):
            state["module"] = None
        if not hasattr(self, "_log"):
            state["_log"] = _StepLog()
        super().__setstate__(state)

    @property
    def diagnostics(self):
        self._log.flush_into(self._diagnostics)
        return self._diagnostics

    def state_dict(self):
        """torch's state dict, with the penalty objects of :mod:`sr2learn.penalties` as
        plain dicts, so that ``torch.load`` reads it with ``weights_only=True``."""
        state = super().state_dict()
        for group in state["param_groups"]:  # copies of the live groups
            group["penalty"] = _plain_penalty(group["penalty"])
        return state

    def load_state_dict(self, state_dict):
        """torch's ``load_state_dict``, rebuilding the penalty objects."""
        self._log.flush_into(self._diagnostics)  # the trace so far keeps its step numbers
        groups = [
            {**group, "penalty": _rebuilt_penalty(group["penalty"])}
            for group in state_dict["param_groups"]
        ]
        super().load_state_dict({**state_dict, "param_groups": groups})

    # sigma is one number for the whole model; it is kept in every group so that it
    # travels with state_dict(). After a step it is a 0-dim tensor on the device.
    @property
    def sigma(self):
        sigma = self.param_groups[0]["sigma"]
        return None if sigma is None else float(sigma)

    def _rule(self):
        g = self.param_groups[0]
        clamp = {k: g[k] for k in ("sigma_min", "sigma_max") if g[k] is not None}
        return SR2Rule(g["eta1"], g["eta2"], g["gamma1"], g["gamma3"], **clamp)

    def _buffers(self):
        return list(self.module.buffers()) if self.module is not None else []

    def _sigma_on(self, device):
        sigma = self.param_groups[0]["sigma"]
        if isinstance(sigma, torch.Tensor):
            return sigma.to(device=device, dtype=torch.float64)
        # torch.full fills on the device: no copy from the host, no synchronisation.
        return torch.full((), float(sigma), dtype=torch.float64, device=device)

    @torch.no_grad()
    def step(self, closure=None, grad_scaler=None):
        """One SR2 step; returns the batch data loss f_B(w) at the start of the step.

        ``grad_scaler``: the ``torch.amp.GradScaler`` whose ``scale(loss)`` the closure
        back-propagates; the step unscales the gradients with it (class docstring).
        """
        if closure is None:
            raise RuntimeError("SR2 needs a closure(backward=True); see the class docstring.")
        params = [p for g in self.param_groups for p in g["params"]]
        devices = {p.device for p in params}
        buffers = self._buffers()
        buffers_before = [b.clone() for b in buffers]
        rng_before = _RNGSnapshot(devices)
        loss = _gradient_pass(closure, params)
        rng_after = _RNGSnapshot(devices)
        buffers_after = [b.clone() for b in buffers]
        segments = self._segments()

        estimated = True
        if self.param_groups[0]["sigma"] is None:
            # Its passes move the buffers: the end of the step restores them below.
            estimated = self._estimate_sigma0(closure, segments, rng_before, grad_scaler)
            rng_after.restore()
        if grad_scaler is not None:
            grad_scaler.unscale_(self)  # records inf/NaN for grad_scaler.update()
        if not estimated:  # a non-finite first gradient: skip, estimate on the next batch
            for b, b_before in zip(buffers, buffers_before, strict=True):
                b.copy_(b_before)
            return self._skip_first_step(loss, segments[0][1][0].device)

        device = segments[0][1][0].device
        sigma = self._sigma_on(device)
        work, terms = self._move_to_trial_point(segments, sigma)
        rng_before.restore()
        try:
            trial_loss = _trial_pass(closure, params)
        except BaseException:  # an aborted step leaves no trace
            self._keep_or_restore(work, buffers, buffers_before, buffers_after, False)
            raise
        rng_after.restore()

        losses = torch.stack([loss.detach().reshape(()), trial_loss.detach().reshape(())])
        losses = losses.to(device=device, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(losses)
            losses /= dist.get_world_size()
        values = torch.cat([losses, terms, sigma.reshape(1)])
        if _host_decides(device):
            values = values.tolist()
        eps = torch.finfo(segments[0][1][0].dtype).eps
        decision = self._decide(*values, eps=eps)
        self._keep_or_restore(work, buffers, buffers_before, buffers_after,
                              decision["accepted"])  # fmt: skip
        nnz = _nonzeros(segments, device)  # where the step ends: w + s, or w
        decision["nnz"] = nnz.item() if _host_decides(device) else nnz
        new_sigma = decision.pop("new_sigma")
        for group in self.param_groups:
            group["sigma"] = new_sigma
        self._record(decision)
        return loss

    def _move_to_trial_point(self, segments, sigma):
        """Write w + s into the parameters; returns ``(params, w)`` per segment and the
        summed step terms (see :func:`_trial_point`)."""
        work, terms = [], []
        # The prox's threshold as a float where the host may read sigma (fewer tensor ops).
        step = 1.0 / (float(sigma) if _host_decides(sigma.device) else sigma)
        for penalty, ps in segments:
            w, trial, step_terms = _trial_point(penalty, ps, sigma, step)
            work.append((ps, w))
            terms.append(step_terms.to(sigma.device))
            _copy_flat_into(ps, trial)
        return work, torch.stack(terms).sum(0)

    @staticmethod
    def _keep_or_restore(work, buffers, buffers_before, buffers_after, accepted):
        """Keep w + s and the buffers of the gradient pass, or go back to w and the
        buffers before the step. ``accepted`` is a bool, or a bool tensor that only the
        device reads (an elementwise choice). The trial pass leaves no trace in the
        buffers (e.g. BatchNorm statistics)."""
        if isinstance(accepted, bool):
            if not accepted:
                for ps, w in work:
                    _copy_flat_into(ps, w)
            for b, value in zip(buffers, buffers_after if accepted else buffers_before,
                                strict=True):  # fmt: skip
                b.copy_(value)
            return
        for ps, w in work:
            for p, w_p in zip(ps, _views(w, ps), strict=True):
                torch.where(accepted, p, w_p, out=p)
        for b, b_before, b_after in zip(buffers, buffers_before, buffers_after, strict=True):
            torch.where(accepted, b_after, b_before, out=b)

    def _decide(self, f_w, f_trial, r_w, r_trial, g_dot_s, s_sq, sigma, *, eps):
        """The SR2 rule: the step's record (``_LOG_COLUMNS`` but the iteration and nnz)
        and ``new_sigma``. The arguments are all floats, or all 0-dim device tensors (then
        nothing is read on the host): the rule's formulas take either."""
        rule = self._rule()
        xi = model_decrease(r_w, r_trial, g_dot_s, s_sq, sigma)
        objective = f_w + r_w
        actual = objective - (f_trial + r_trial)
        scale = where(abs(objective) > 1.0, abs(objective), 1.0)  # max(1, |F_B(w)|)
        rho = sr2_ratio(actual, xi, scale, eps)
        accepted, new_sigma, clamped = sr2_update(
            rho, sigma, rule.eta1, rule.eta2, rule.gamma1, rule.gamma3,
            rule.sigma_min, rule.sigma_max,
        )  # fmt: skip
        # g's is not finite exactly when g is not (inf or NaN times anything): no step
        # was computed, so nothing is learnt about sigma.
        computed = isfinite(g_dot_s)
        accepted = accepted & computed
        return {
            "new_sigma": where(computed, new_sigma, sigma),
            "sigma": sigma,
            "rho": rho,
            "accepted": accepted,
            "step_sq": s_sq,
            "xi": xi,
            "objective": objective,
            "clamped": clamped & computed,
        }

    def _estimate_sigma0(self, closure, segments, rng, grad_scaler):
        """Set sigma0 (and the default clamp) from the curvature of the first batch; False,
        leaving sigma unset, when the gradient is not finite."""
        params = [p for _, ps in segments for p in ps]
        scale = grad_scaler.get_scale() if grad_scaler is not None else 1.0
        grad_norm = _norm([p.grad for p in params]) / scale
        if not math.isfinite(grad_norm):
            return False
        curvature, grad_norm, weight_norm = _curvature(closure, params, rng, scale)
        sigma0 = _sigma0_from(curvature, grad_norm, weight_norm)
        for group in self.param_groups:
            _set_sigma0(group, sigma0)
        return True

    def _skip_first_step(self, loss, device):
        """Record a skipped first step (no sigma yet); the parameters never moved."""
        record = dict.fromkeys(_LOG_COLUMNS, math.nan)
        record.update(accepted=False, clamped=False, objective=loss.detach().reshape(()))
        if _host_decides(device):
            record["objective"] = float(record["objective"])
        else:
            nan = torch.full((), math.nan, dtype=torch.float64, device=device)
            record = {k: v if isinstance(v, torch.Tensor) else torch.full_like(nan, v)
                      for k, v in record.items()}  # fmt: skip
        self._record(record)
        return loss

    def _record(self, record):
        """Count the step and log its record (``_LOG_COLUMNS`` but the iteration): floats
        go to the diagnostics now, device tensors when the diagnostics are read."""
        for group in self.param_groups:
            group["n_steps"] += 1
        n = self.param_groups[0]["n_steps"]
        sigma = record["sigma"]
        if not isinstance(sigma, torch.Tensor):
            self._log.flush_into(self._diagnostics)  # earlier steps first
            self._diagnostics.record_step(
                n, 0, sigma, record["rho"], float(record["accepted"]), record["step_sq"],
                record["xi"], record["objective"], record["nnz"],
            )  # fmt: skip
            self._diagnostics.n_sigma_clamps += bool(record["clamped"])
            return
        record["iteration"] = torch.full_like(sigma, n)
        self._log.append(torch.stack([record[k].to(sigma) for k in _LOG_COLUMNS]))

    def _segments(self):
        """(penalty, params) per group, for the parameters that have a gradient."""
        out = []
        for group in self.param_groups:
            ps = _with_grad(group["params"], type(self).__name__)
            if ps:
                out.append((_group_penalty(group), ps))
        return out

    @torch.no_grad()
    def checkpoint(self, closures):
        """Record a checkpoint of *estimates* at the current point in ``diagnostics``.

        ``closures`` are at least two closures (the protocol of :meth:`step`) on different
        minibatches. Their mean gradient stands in for grad f; V is the variance of one
        minibatch gradient around it (V / k for the mean, used in ``bound``); L is a secant
        estimate ||g(w+s) - g(w)|| / ||s|| along the step s of the mean gradient at the
        current sigma (evaluated on the first closure). ``dist`` and ``dist_trial`` use
        minibatch gradients, so they too are estimates:
        ``diagnostics.lipschitz_is_estimate`` is True and the summary says so.
        Parameters, buffers and the random state are left as they were; the cost is
        ``len(closures) + 1`` gradient passes.
        """
        if len(closures) < 2:
            raise ValueError("checkpoint needs closures on at least two minibatches")
        if self.sigma is None:
            raise RuntimeError("checkpoint needs sigma: take a step first (it estimates "
                               "sigma0), or give lr or sigma0")  # fmt: skip
        params = [p for g in self.param_groups for p in g["params"]]
        rng = _RNGSnapshot({p.device for p in params})
        buffers = self._buffers()
        saved_buffers = [b.clone() for b in buffers]
        grads, losses = [], []
        for closure in closures:
            losses.append(float(_gradient_pass(closure, params)))
            grads.append(
                [torch.cat([p.grad.reshape(-1) for p in ps]) for _, ps in self._segments()]
            )
        k = len(grads)
        segments = self._segments()
        mean = [sum(g[j] for g in grads) / k for j in range(len(segments))]
        V = sum(float(((g[j] - mean[j]) ** 2).sum()) for g in grads for j in range(len(segments)))
        V /= k - 1
        sigma = self.sigma
        r_w = r_trial = gs = s_sq = dist_sq = 0.0
        saved, trial_flats = [], []
        for (penalty, ps), g in zip(segments, mean, strict=True):
            w = _flat(ps)
            trial = w - g / sigma
            if penalty is not None:
                trial = penalty.prox(trial, 1.0 / sigma)
                r_w += float(penalty.value_array(w))
                r_trial += float(penalty.value_array(trial))
                dist_sq += float((penalty.subdiff_distance(w, g) ** 2).sum())
            else:
                dist_sq += float((g**2).sum())
            s = trial - w
            gs += float(torch.dot(g, s))
            s_sq += float(torch.dot(s, s))
            saved.append((ps, w))
            trial_flats.append(trial)
        # The measure of the NumPy solver: sqrt(sigma xi).
        xi = SR2Rule.model_decrease(r_w, r_trial, gs, s_sq, sigma)
        # Gradient of the first minibatch at w + s, for the secant L and dist_trial.
        for (_, ps), trial in zip(segments, trial_flats, strict=True):
            _copy_flat_into(ps, trial)
        _gradient_pass(closures[0], params)
        diff_sq = trial_dist_sq = 0.0
        for (penalty, ps), g0, trial in zip(segments, grads[0], trial_flats, strict=True):
            g_trial = torch.cat([p.grad.reshape(-1) for p in ps])
            diff_sq += float(((g_trial - g0) ** 2).sum())
            d = penalty.subdiff_distance(trial, g_trial) if penalty is not None else g_trial
            trial_dist_sq += float((d**2).sum())
        for ps, w in saved:
            _copy_flat_into(ps, w)
        for b, b0 in zip(buffers, saved_buffers, strict=True):
            b.copy_(b0)
        rng.restore()
        self.zero_grad()

        history = self.diagnostics.history
        since = self.diagnostics.last_checkpoint()
        start = int(since["iteration"]) if since else 0
        accepted = history["accepted"][start:].astype(bool)
        steps = history["step_sq"][start:][accepted]
        L = math.sqrt(diff_sq / s_sq) if s_sq > 0 else 0.0
        smax = float(history["sigma"].max()) if history["sigma"].size else sigma
        smax = max(smax, sigma)
        step_sq = float(steps.mean()) if steps.size else math.nan
        self.diagnostics.record_checkpoint(
            iteration=self.param_groups[0]["n_steps"],
            epoch=0,
            objective=sum(losses) / k + r_w,
            nnz=sum(float(torch.count_nonzero(w)) for (pen, _), (_, w) in
                    zip(segments, saved, strict=True) if pen is not None),
            sigma=sigma,
            batch_size=math.nan,
            step_sq=step_sq,
            step_max=math.sqrt(float(steps.max())) if steps.size else math.nan,
            measure=math.sqrt(sigma * xi),
            gap=math.nan,  # nonconvex networks: no duality gap
            criterion=math.nan,
            lipschitz=L,
            sigma_max=smax,
            variance=V,
            dist=math.sqrt(dist_sq),
            dist_trial=math.sqrt(trial_dist_sq),
            trial_step_sq=s_sq,
            trial_grad_error_sq=V / k,  # s is drawn from the mean of k batch gradients
        )  # fmt: skip
        return self.diagnostics.last_checkpoint()


class _PreconditionedProx(torch.optim.Optimizer):
    """Shared body of ProxSGD and ProxGEN: momentum, a diagonal Adam-like preconditioner,
    and a proximal step in the preconditioner's metric."""

    _allowed = ("l1", "l0")

    def __init__(self, params, lr, momentum, preconditioner, beta2, eps, penalty, alpha):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "preconditioner": preconditioner,
            "beta2": beta2,
            "eps": eps,
            "penalty": penalty,
            "alpha": alpha,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        """torch's ``add_param_group`` (also used by the constructor), after checking the
        group's hyperparameters with the defaults filled in."""
        self._check_group({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def _check_group(self, group):
        _positive("lr", group["lr"])
        for name in ("momentum", "beta2"):
            if not 0 <= group[name] < 1:
                raise ValueError(f"{name} must be in [0, 1), got {group[name]!r}")
        if not 0 <= group["eps"] < math.inf:
            raise ValueError(f"eps must be a finite number >= 0, got {group['eps']!r}")
        if group["penalty"] is not None and group["penalty"] not in self._allowed:
            raise ValueError(
                f"{type(self).__name__} supports penalty in {self._allowed}, "
                f"got {group['penalty']!r}"
            )

    def _direction(self, group, ps):
        """The (momentum) direction and the per-coordinate step for each parameter."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Every gradient is checked before any parameter moves.
        name = type(self).__name__
        segments = [(group, _with_grad(group["params"], name)) for group in self.param_groups]
        for group, ps in segments:
            if not ps:
                continue
            directions, steps = self._direction(group, ps)
            penalty = _group_penalty(group)
            for p, d, t in zip(ps, directions, steps, strict=True):
                v = p - t * d
                p.copy_(penalty.prox(v, t) if penalty is not None else v)
        return loss


class ProxGEN(_PreconditionedProx):
    """ProxGEN (Yun, Lozano, Yang 2021): preconditioned proximal gradient with momentum.

    x+ = prox_{lr R}^{C}(x - lr C^{-1} m), with m the momentum average of the gradients
    (``momentum`` = rho in [0, 1)) and C = sqrt(v) + eps the Adam-like diagonal
    preconditioner (``preconditioner=True``, v the ``beta2`` average of g^2); the prox in
    the metric of C uses the per-coordinate step lr / C. With ``momentum=0`` and
    ``preconditioner=False`` it is the proximal SGD of the SR2 paper's comparison. l1 and
    l0 penalties.

    ``lr`` must be a finite number > 0, ``momentum`` and ``beta2`` in [0, 1) and ``eps``
    finite and >= 0, in the defaults and in every parameter group (ValueError otherwise);
    gradients must be dense (RuntimeError otherwise).
    """

    def __init__(
        self, params, lr=1e-2, *, momentum=0.0, preconditioner=False, beta2=0.999, eps=1e-8,
        penalty="l1", alpha=0.0,
    ):  # fmt: skip
        super().__init__(params, lr, momentum, preconditioner, beta2, eps, penalty, alpha)

    def _direction(self, group, ps):
        directions, steps = [], []
        for p in ps:
            state = self.state[p]
            g = p.grad
            if group["momentum"] > 0:
                m = state.setdefault("momentum", torch.zeros_like(p))
                m.mul_(group["momentum"]).add_(g, alpha=1 - group["momentum"])
                g = m
            step = group["lr"]
            if group["preconditioner"]:
                v = state.setdefault("second_moment", torch.zeros_like(p))
                v.mul_(group["beta2"]).addcmul_(p.grad, p.grad, value=1 - group["beta2"])
                step = group["lr"] / (v.sqrt() + group["eps"])
            directions.append(g)
            steps.append(step)
        return directions, steps


class ProxSGD(_PreconditionedProx):
    """ProxSGD (Yang, Yuan, Jacobsen, Ye 2020): momentum, diagonal preconditioner, and a
    convex combination of the current point and the proximal point.

    x^ = prox_{R/tau}(x - v / tau) with v the momentum average of the gradients and
    tau = (sqrt(r) + eps) / lr (r the ``beta2`` average of g^2) or 1/lr without
    preconditioner; then x+ = x + ``relaxation`` (x^ - x). With ``momentum=0``,
    ``preconditioner=False`` and ``relaxation=1`` it is plain proximal SGD, the setting of
    the SR2 paper's comparison. Only the convex l1 penalty (the method's scope).
    Hyperparameters and gradients are checked as in :class:`ProxGEN`.
    """

    _allowed = ("l1",)

    def __init__(
        self, params, lr=1e-2, *, momentum=0.0, preconditioner=False, beta2=0.999, eps=1e-8,
        relaxation=1.0, penalty="l1", alpha=0.0,
    ):  # fmt: skip
        if not 0 < relaxation <= 1:
            raise ValueError(f"relaxation must be in (0, 1], got {relaxation!r}")
        self.relaxation = relaxation
        super().__init__(params, lr, momentum, preconditioner, beta2, eps, penalty, alpha)

    _direction = ProxGEN._direction

    @torch.no_grad()
    def step(self, closure=None):
        if self.relaxation == 1.0:
            return super().step(closure)
        before = [[p.clone() for p in g["params"]] for g in self.param_groups]
        loss = super().step(closure)
        for group, olds in zip(self.param_groups, before, strict=True):
            for p, old in zip(group["params"], olds, strict=True):
                p.copy_(old + self.relaxation * (p - old))
        return loss
