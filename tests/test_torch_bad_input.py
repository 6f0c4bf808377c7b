"""sr2learn.torch on bad input: invalid hyperparameters, closures that break SR2's
protocol, sparse gradients, and penalty objects in a weights-only checkpoint."""

import math
import re

import pytest
import torch
from torch import nn

from sr2learn.torch import SR2, ProxGEN, ProxSGD


@pytest.fixture
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, torch.randn(32, 6), torch.randn(32, 3)


def closure_for(model, opt, X, y):
    def closure(backward=True):
        loss = nn.functional.mse_loss(model(X), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    return closure


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# -- hyperparameters ----------------------------------------------------------------------


def value_message(name, value):
    return rf"^{name} must be .*got {re.escape(repr(value))}$"


@pytest.mark.parametrize("name", ["lr", "sigma0"])
@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan])
def test_sr2_rejects_bad_step_sizes(name, value):
    with pytest.raises(ValueError, match=value_message(name, value)):
        SR2(nn.Linear(2, 1).parameters(), **{name: value})


def test_sr2_checks_the_rule_at_construction():
    with pytest.raises(ValueError, match="eta1"):
        SR2(nn.Linear(2, 1).parameters(), lr=0.1, eta1=2.0)


@pytest.mark.parametrize("cls", [ProxSGD, ProxGEN])
@pytest.mark.parametrize(
    "name, value",
    [
        ("lr", math.inf), ("lr", math.nan), ("lr", 0.0),
        ("momentum", 1.0), ("momentum", -0.1), ("momentum", math.nan),
        ("eps", -1e-8), ("eps", math.nan),
        ("beta2", 1.0), ("beta2", -0.5),
    ],
)  # fmt: skip
def test_baselines_reject_bad_hyperparameters(cls, name, value):
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=value_message(name, value)):
        cls([p], **{name: value})
    with pytest.raises(ValueError, match=value_message(name, value)):
        cls([{"params": [p], name: value}])  # a group's own value too
    opt = cls([p])
    with pytest.raises(ValueError, match=value_message(name, value)):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], name: value})
    assert len(opt.param_groups) == 1
