"""
=====================================================
The accuracy-sparsity front of a network: SR2 vs SGD
=====================================================

How accurate is a network for the fraction of its weights that are exactly zero? Train an
MLP 784-300-100-10 on 2,000 MNIST digits with an l1 or an l0 penalty on its weights, at a
few strengths alpha, with :class:`sr2learn.torch.SR2` at its defaults (no learning rate
given) and with :class:`sr2learn.torch.ProxGEN` (proximal SGD, the SR2 paper's baseline) at
two learning rates, and plot test accuracy against the fraction of zeros. Each method and
learning rate draws one line through its alphas; up and to the right is better.

This is a small version of ``benchmarks/bench_torch_front.py`` (two epochs, one seed): the
benchmark page shows the full front with more learning rates, a CNN and Fashion-MNIST.
The data come from :func:`sr2learn.datasets.load_mnist5k`.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn

from sr2learn.datasets import load_mnist5k
from sr2learn.torch import SR2, ProxGEN, penalized_groups
from sr2learn.torch.pruning import sparsity_report

X, y = load_mnist5k()
X, y = torch.from_numpy(X).float(), torch.from_numpy(y)
X_train, y_train, X_test, y_test = X[:2000], y[:2000], X[4000:], y[4000:]


def train(optimizer_factory, penalty, alpha, epochs=2, batch_size=64):
    """Train the MLP; return its test accuracy and its fraction of zero weights."""
    torch.manual_seed(0)  # every run starts from the same weights and sees the same batches
    model = nn.Sequential(
        nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )
    opt = optimizer_factory(penalized_groups(model, penalty, alpha), model)
    for _ in range(epochs):
        for idx in torch.randperm(len(X_train)).split(batch_size):
            # SR2 calls the closure twice per step: with backward=True for the gradient at
            # w, with backward=False for the loss alone at the trial point w + s.
            def closure(backward=True, idx=idx):
                loss = nn.functional.cross_entropy(model(X_train[idx]), y_train[idx])
                if backward:
                    opt.zero_grad()
                    loss.backward()
                return loss

            if isinstance(opt, SR2):
                opt.step(closure)
            else:
                closure()
                opt.step()
    with torch.no_grad():
        accuracy = (model(X_test).argmax(1) == y_test).float().mean().item()
    return accuracy, sparsity_report(model)["total"]["zero_fraction"]


methods = {
    "SR2, defaults": lambda groups, model: SR2(groups, module=model),
    "ProxGEN, lr 0.03": lambda groups, model: ProxGEN(groups, lr=0.03),
    "ProxGEN, lr 0.3": lambda groups, model: ProxGEN(groups, lr=0.3),
}
alphas = {"l1": [1e-4, 3e-4, 1e-3, 3e-3], "l0": [3e-5, 1e-4, 3e-4, 1e-3]}

fronts = {}
for penalty, penalty_alphas in alphas.items():
    for name, factory in methods.items():
        fronts[penalty, name] = [train(factory, penalty, alpha) for alpha in penalty_alphas]
        points = ", ".join(
            f"{100 * acc:.0f}% / {100 * zeros:.0f}%" for acc, zeros in fronts[penalty, name]
        )
        print(f"{penalty} {name:17s} accuracy / zeros at alpha {penalty_alphas}: {points}")

# %%
# The front
# ---------
# Each marker is one alpha (larger alpha, more zeros). A method whose line lies above
# another's reaches the same sparsity at a higher accuracy. ProxGEN's sparsity depends on
# its learning rate as much as on alpha (its prox threshold is ``lr * alpha`` for l1,
# ``sqrt(2 lr alpha)`` for l0); SR2 picks its step itself.

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
for ax, penalty in zip(axes, alphas, strict=True):
    for (pen, name), points in fronts.items():
        if pen != penalty:
            continue
        accs, zeros = zip(*points, strict=True)
        ax.plot(
            [100 * z for z in zeros], [100 * a for a in accs],
            "*-" if name.startswith("SR2") else "s:", markersize=12 if "SR2" in name else 6,
            label=name,
        )  # fmt: skip
    ax.set(xlabel="weights exactly 0 (%)", ylabel="test accuracy (%)", title=f"{penalty} penalty")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
plt.show()
