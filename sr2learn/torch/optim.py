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
from .._rule import SR2Rule
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
    views = torch.split(flat, [p.numel() for p in params])
    torch._foreach_copy_(params, [v.view_as(p) for v, p in zip(views, params, strict=True)])


class _RNGSnapshot:
    """The CPU and CUDA generator states, so two forward passes see the same randomness."""

    def __init__(self, devices):
        self.cpu = torch.get_rng_state()
        self.cuda = {d: torch.cuda.get_rng_state(d) for d in devices if d.type == "cuda"}

    def restore(self):
        torch.set_rng_state(self.cpu)
        for device, state in self.cuda.items():
            torch.cuda.set_rng_state(state, device)


class SR2(torch.optim.Optimizer):
    """SR2: proximal stochastic steps with adaptive quadratic regularisation sigma.

    One ``step(closure)`` does one gradient pass at w and one loss-only pass at the trial
    point w + s on the same batch, with s = prox_{R/sigma}(w - g/sigma) - w; the step is
    kept when (F_B(w) - F_B(w+s)) / (R(w) - R(w+s) - g's) >= eta1, and sigma shrinks,
    stays or grows by the rule of :class:`sr2learn._rule.SR2Rule` (paper's Table 1).

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups. A group may set ``penalty`` (a name "l1", "l0",
        "l1/2", "l2/3", a :class:`sr2learn.penalties.Penalty`, or None) and ``alpha``;
        :func:`penalized_groups` builds the usual split (conv/linear weights penalised,
        biases and normalisation parameters not).
    lr : float, default=None
        The initial step size, a finite number > 0: ``sigma0 = 1 / lr`` when ``sigma0``
        is not given. SR2 adapts sigma from then on; lr is not used again. (skorch always
        passes ``lr``.) In networks sigma rarely shrinks (rho >= eta2 is rare on a
        minibatch), so this first step size matters: it plays the role of SGD's learning
        rate.
    sigma0 : float, default=None
        Initial sigma, a finite number > 0; wins over ``lr``. Default 1 / lr, or 10 when
        neither is given.
    penalty, alpha : default "l1", 0.0
        Defaults for groups that do not set them.
    eta1, eta2, gamma1, gamma3 : float
        The acceptance thresholds and sigma factors (Table 1 of the paper).
    sigma_min, sigma_max : float, default=None
        Clamp of sigma; None means ``sigma0 / 1e10`` and ``sigma0 * 1e10``.
    module : torch.nn.Module, default=None
        The model. When given, its buffers (e.g. BatchNorm running statistics) are
        restored on a rejected step, and the trial pass never moves them; without it
        buffers are left to the forward passes.

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
    draws the same masks in both passes. Rules kept: the prox and R(w) cover exactly the
    same parameters; a rejected step restores the parameters, the module's buffers and
    leaves no other trace; sigma is stored in the param groups, so ``state_dict()`` /
    ``load_state_dict()`` resume the same trajectory. There is one host synchronisation
    per step (the scalars of the acceptance test). A closure that never writes a gradient
    in the first pass, or calls backward or changes the gradients in the trial pass, gets
    a RuntimeError (checked on the gradients' version counters, at no extra pass); the
    step it aborts leaves the parameters and buffers as they were.

    ``state_dict()`` stores a penalty object of :mod:`sr2learn.penalties` as a plain dict
    (class name and parameters) and ``load_state_dict`` rebuilds it, so a checkpoint
    loads with ``torch.load``'s default ``weights_only=True``.

    Under ``DistributedDataParallel`` the gradient is averaged by DDP's backward and the
    two batch losses are all-reduced here, so every rank takes the same decision and
    keeps identical parameters.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sr2learn.torch import SR2, penalized_groups
    >>> torch.manual_seed(0) and None
    >>> model = nn.Linear(5, 1)
    >>> X, y = torch.randn(64, 5), torch.randn(64, 1)
    >>> opt = SR2(penalized_groups(model, "l1", 1e-2), lr=0.1)
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
        else:
            sigma0 = _positive("1 / lr", 1.0 / lr) if lr is not None else 10.0
        defaults = {
            "lr": 1.0 / sigma0,
            "penalty": penalty,
            "alpha": alpha,
            "sigma": float(sigma0),
            "eta1": eta1,
            "eta2": eta2,
            "gamma1": gamma1,
            "gamma3": gamma3,
            "sigma_min": sigma0 / 1e10 if sigma_min is None else sigma_min,
            "sigma_max": sigma0 * 1e10 if sigma_max is None else sigma_max,
            "n_steps": 0,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["penalty"] is not None and not isinstance(group["penalty"], Penalty):
                check_penalty(group["penalty"], group["alpha"])  # fail early on bad names
        self._rule()  # and on bad thresholds
        self.module = module
        self.diagnostics = ConvergenceDiagnostics(lipschitz_is_estimate=True)

    def __getstate__(self):
        # torch's Optimizer pickles only defaults, state and param_groups; keep the module
        # (pickled together with it, e.g. by skorch, it stays the same object) and the trace.
        state = super().__getstate__()
        state["module"] = self.module
        state["diagnostics"] = self.diagnostics
        return state

    def __setstate__(self, state):
        # Also called by load_state_dict with only state and param_groups: keep what is set.
        if "module" not in state and not hasattr(self, "module"):
            state["module"] = None
        if "diagnostics" not in state and not hasattr(self, "diagnostics"):
            state["diagnostics"] = ConvergenceDiagnostics(lipschitz_is_estimate=True)
        super().__setstate__(state)

    def state_dict(self):
        """torch's state dict, with the penalty objects of :mod:`sr2learn.penalties` as
        plain dicts, so that ``torch.load`` reads it with ``weights_only=True``."""
        state = super().state_dict()
        for group in state["param_groups"]:  # copies of the live groups
            group["penalty"] = _plain_penalty(group["penalty"])
        return state

    def load_state_dict(self, state_dict):
        """torch's ``load_state_dict``, rebuilding the penalty objects."""
        groups = [
            {**group, "penalty": _rebuilt_penalty(group["penalty"])}
            for group in state_dict["param_groups"]
        ]
        super().load_state_dict({**state_dict, "param_groups": groups})

    # sigma is one number for the whole model; it is kept in every group so that it
    # travels with state_dict().
    @property
    def sigma(self):
        return self.param_groups[0]["sigma"]

    def _rule(self):
        g = self.param_groups[0]
        return SR2Rule(
            g["eta1"], g["eta2"], g["gamma1"], g["gamma3"], g["sigma_min"], g["sigma_max"]
        )

    def _buffers(self):
        return list(self.module.buffers()) if self.module is not None else []

    @torch.no_grad()
    def step(self, closure=None):
        """One SR2 step; returns the batch data loss f_B(w) at the start of the step."""
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

        sigma = self.sigma
        terms = []  # R(w), R(w+s), g's, ||s||^2, nnz(w), nnz(w+s), summed over groups
        saved = []
        for penalty, ps in self._segments():
            w = _flat(ps)
            g = _flat([p.grad for p in ps])
            trial = w - g / sigma
            if penalty is not None:
                trial = penalty.prox(trial, 1.0 / sigma)
                r_w, r_trial = penalty.value_array(w), penalty.value_array(trial)
                nnz = torch.count_nonzero(w).to(w.dtype)
                nnz_trial = torch.count_nonzero(trial).to(w.dtype)
            else:
                r_w = r_trial = nnz = nnz_trial = torch.zeros((), dtype=w.dtype, device=w.device)
            s = trial - w
            terms.append(
                torch.stack([r_w, r_trial, torch.dot(g, s), torch.dot(s, s), nnz, nnz_trial])
            )
            saved.append((ps, w))
            _copy_flat_into(ps, trial)
        rng_before.restore()
        try:
            trial_loss = _trial_pass(closure, params)
        except BaseException:
            self._restore(saved, buffers, buffers_before)  # an aborted step leaves no trace
            raise
        rng_after.restore()
        for b, b_after in zip(buffers, buffers_after, strict=True):
            b.copy_(b_after)  # the trial pass leaves no trace in the running statistics

        losses = torch.stack([loss.detach().reshape(()), trial_loss.detach().reshape(())])
        losses = losses.to(torch.float64)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(losses)
            losses /= dist.get_world_size()
        summed = torch.stack([t.to(torch.float64).to(losses.device) for t in terms]).sum(0)
        f_w, f_trial, r_w, r_trial, gs, s_sq, nnz, nnz_trial = torch.cat([losses, summed]).tolist()

        rule = self._rule()
        xi = rule.model_decrease(r_w, r_trial, gs, s_sq, sigma)
        actual = (f_w + r_w) - (f_trial + r_trial)
        eps = torch.finfo(saved[0][1].dtype).eps if saved else 2.2e-16
        rho = rule.ratio(actual, xi, max(1.0, abs(f_w + r_w)), eps)
        accepted, new_sigma, clamped = rule.update(rho, sigma)
        if not accepted:
            self._restore(saved, buffers, buffers_before)
        for group in self.param_groups:
            group["sigma"] = new_sigma
            group["lr"] = 1.0 / new_sigma
            group["n_steps"] += 1
        n = self.param_groups[0]["n_steps"]
        self.diagnostics.n_sigma_clamps += clamped
        self.diagnostics.record_step(
            n, 0, sigma, rho, float(accepted), s_sq, xi, f_w + r_w, nnz_trial if accepted else nnz
        )
        return loss

    @staticmethod
    def _restore(saved, buffers, values):
        for ps, w in saved:
            _copy_flat_into(ps, w)
        for b, value in zip(buffers, values, strict=True):
            b.copy_(value)

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
