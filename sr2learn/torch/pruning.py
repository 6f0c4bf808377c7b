"""Sparsity of trained networks: reports, magnitude pruning and the paper's pruning curves.

All functions look at the weights of conv and linear layers (the penalised parameters of
:func:`sr2learn.torch.penalized_groups`); biases and normalisation parameters are left out.
"""

import copy

import torch

from .optim import _PENALISED_TYPES

__all__ = ["prunable_weights", "sparsity_report", "prune", "pruning_curve", "plot_pruning_curve"]

SMALL = 1e-3


def prunable_weights(module):
    """``(name, weight)`` for every conv / linear layer of ``module``."""
    return [
        (name, sub.weight)
        for name, sub in module.named_modules()
        if isinstance(sub, _PENALISED_TYPES) and getattr(sub, "weight", None) is not None
    ]


@torch.no_grad()
def sparsity_report(module, small=SMALL):
    """Per layer and in total: weights, exact zeros and ``abs(w) <= small``.

    Returns a dict ``{"layers": [ {name, n_weights, zeros, small, zero_fraction,
    small_fraction}, ... ], "total": {...}}`` with plain Python numbers.
    """
    layers = []
    for name, w in prunable_weights(module):
        n = w.numel()
        zeros = int((w == 0).sum())
        smalls = int((w.abs() <= small).sum())
        layers.append(
            {"name": name, "n_weights": n, "zeros": zeros, "small": smalls,
             "zero_fraction": zeros / n, "small_fraction": smalls / n}
        )  # fmt: skip
    n = sum(layer["n_weights"] for layer in layers)
    zeros = sum(layer["zeros"] for layer in layers)
    smalls = sum(layer["small"] for layer in layers)
    total = {
        "n_weights": n, "zeros": zeros, "small": smalls,
        "zero_fraction": zeros / n if n else 0.0, "small_fraction": smalls / n if n else 0.0,
    }  # fmt: skip
    return {"layers": layers, "total": total}


@torch.no_grad()
def prune(module, threshold):
    """Set every conv / linear weight with ``abs(w) <= threshold`` to 0, in place.

    Returns the number of weights that are zero afterwards.
    """
    zeros = 0
    for _, w in prunable_weights(module):
        w.masked_fill_(w.abs() <= threshold, 0.0)
        zeros += int((w == 0).sum())
    return zeros


def pruning_curve(module, evaluate, thresholds=None):
    """Accuracy and sparsity after pruning at each threshold, without retraining.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network; it is not modified (each threshold prunes a copy).
    evaluate : callable
        ``evaluate(pruned_module) -> float``, e.g. the test accuracy.
    thresholds : sequence of float, default 10^-k for k = 1..8 (the paper's Figures 2-4)

    Returns
    -------
    list of dict with ``threshold``, ``score`` and ``zero_fraction``, from the largest
    threshold to the smallest, plus a first row with threshold 0 (the unpruned network).
    """
    if thresholds is None:
        thresholds = [10.0**-k for k in range(1, 9)]
    rows = []
    for threshold in [0.0, *sorted(thresholds, reverse=True)]:
        pruned = copy.deepcopy(module)
        if threshold > 0:
            prune(pruned, threshold)
        rows.append(
            {"threshold": threshold, "score": float(evaluate(pruned)),
             "zero_fraction": sparsity_report(pruned)["total"]["zero_fraction"]}
        )  # fmt: skip
    return rows


def plot_pruning_curve(curves, ax=None):
    """Plot score and sparsity against the threshold for one or several ``pruning_curve``
    results (a dict label -> rows). Needs matplotlib; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    twin = ax.twinx()
    for label, rows in curves.items():
        rows = [r for r in rows if r["threshold"] > 0]
        t = [r["threshold"] for r in rows]
        (line,) = ax.semilogx(t, [r["score"] for r in rows], "o-", label=f"{label} score")
        twin.semilogx(t, [100 * r["zero_fraction"] for r in rows], "s--", color=line.get_color())
    ax.set_xlabel("pruning threshold |w| <=")
    ax.set_ylabel("score (solid)")
    twin.set_ylabel("% weights = 0 (dashed)")
    ax.legend(fontsize=8, loc="lower left")
    return ax
