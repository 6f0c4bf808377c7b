"""The small CNN of the torch benchmarks (two conv layers with BatchNorm, two linear)."""

from torch import nn


def small_cnn(n_classes=10):
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, n_classes),
    )  # fmt: skip
