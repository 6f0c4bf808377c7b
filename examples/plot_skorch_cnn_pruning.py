"""
==================================================
A sparse CNN with skorch, and its pruning curve
==================================================

Train a small convolutional network on scikit-learn's 8x8 digits with
:class:`sr2learn.skorch.SR2NeuralNetClassifier` (SR2 with an l1 penalty on the conv and
linear weights), then prune the weights at ``abs(w) <= 10^-k`` for k = 1..8 without retraining,
as in the SR2 paper's Figures 2-4, and compare with the same network trained by
ProxGEN (proximal SGD, the paper's baseline). ``net.history`` holds the sparsity and
SR2's sigma and acceptance rate after each epoch.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from sr2learn.skorch import SR2NeuralNetClassifier
from sr2learn.torch import ProxGEN
from sr2learn.torch.pruning import plot_pruning_curve, pruning_curve


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Linear(32 * 2 * 2, 10)

    def forward(self, X):
        return self.classifier(self.features(X).flatten(1))


X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

curves = {}
for name, optimizer in (("SR2", None), ("ProxGEN", ProxGEN)):
    torch.manual_seed(0)
    extra = {} if optimizer is None else {"optimizer": optimizer}
    net = SR2NeuralNetClassifier(
        SmallCNN, criterion=nn.CrossEntropyLoss, max_epochs=15, lr=0.2, batch_size=64,
        optimizer__penalty="l1", optimizer__alpha=1e-3, train_split=None, verbose=0, **extra,
    )  # fmt: skip
    net.fit(X_train, y_train)
    last = net.history[-1]
    print(
        f"{name}: test accuracy {net.score(X_test, y_test):.3f}, "
        f"{100 * last['zero_fraction']:.1f}% of weights exactly zero"
    )

    def test_accuracy(module):
        with torch.no_grad():
            return (module(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean()

    curves[name] = pruning_curve(net.module_, test_accuracy)
    if name == "SR2":
        sr2_history = net.history

fig, (ax_curve, ax_hist) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
plot_pruning_curve(curves, ax=ax_curve)
ax_curve.set_title("Pruning without retraining")
ax_hist.plot(sr2_history[:, "zero_fraction"], "o-", label="SR2: fraction of zeros")
ax_hist.plot(sr2_history[:, "acceptance_rate"], "s-", label="SR2: acceptance rate")
ax_hist.set(xlabel="epoch", title="net.history")
ax_hist.legend()
plt.show()
