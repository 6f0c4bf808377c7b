"""sr2learn.torch on bad input: invalid hyperparameters, closures that break SR2's
protocol, sparse gradients, and penalty objects in a weights-only checkpoint."""

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from sr2learn.penalties import L1, L0Ball
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


# -- closure protocol ---------------------------------------------------------------------


def always_backward(model, opt, X, y):
    def closure(backward=True):  # ignores the flag
        loss = nn.functional.mse_loss(model(X), y)
        opt.zero_grad()
        loss.backward()
        return loss

    return closure


def always_backward_with_grad(model, opt, X, y):
    def closure(backward=True):  # ignores the flag and re-enables autograd itself
        with torch.enable_grad():
            return always_backward(model, opt, X, y)()

    return closure


@pytest.mark.parametrize("make", [always_backward, always_backward_with_grad])
def test_closure_calling_backward_in_the_trial_pass_is_explained(problem, make):
    model, X, y = problem
    opt = SR2(model.parameters(), lr=0.1)
    before = params_of(model)
    with pytest.raises(RuntimeError, match=r"closure\(backward=False\).*backward=True"):
        opt.step(make(model, opt, X, y))
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, p0)  # the aborted step left w as it was
    assert opt.diagnostics.n_steps == 0


def test_closure_never_calling_backward_is_explained(problem):
    model, X, y = problem
    opt = SR2(model.parameters(), lr=0.1)

    def no_backward(backward=True):
        return nn.functional.mse_loss(model(X), y)

    message = r"closure\(backward=True\) produced no gradient.*loss\.backward\(\)"
    with pytest.raises(RuntimeError, match=message):
        opt.step(no_backward)
    opt.step(closure_for(model, opt, X, y))  # a correct step leaves gradients behind ...
    with pytest.raises(RuntimeError, match=message):
        opt.step(no_backward)  # ... which are stale, not produced by this closure
    with pytest.raises(RuntimeError, match=message):
        opt.checkpoint([no_backward, no_backward])


def test_closure_must_return_the_loss(problem):
    model, X, y = problem
    opt = SR2(model.parameters(), lr=0.1)
    closure = closure_for(model, opt, X, y)

    def returns_nothing(backward=True):
        closure(backward)

    def trial_returns_nothing(backward=True):
        loss = closure(backward)
        return loss if backward else None

    with pytest.raises(TypeError, match=r"closure\(backward=True\) must return the loss"):
        opt.step(returns_nothing)
    with pytest.raises(TypeError, match=r"closure\(backward=False\) must return the loss"):
        opt.step(trial_returns_nothing)


# -- sparse gradients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SR2(ps, lr=0.1),
        lambda ps: ProxSGD(ps, lr=0.1),
        lambda ps: ProxGEN(ps, lr=0.1, momentum=0.9, preconditioner=True),
    ],
    ids=["SR2", "ProxSGD", "ProxGEN"],
)
def test_sparse_gradients_get_a_clear_error(make):
    torch.manual_seed(0)
    embedding = nn.Embedding(10, 3, sparse=True)
    head = nn.Linear(3, 1)
    opt = make([*head.parameters(), *embedding.parameters()])
    before = params_of(embedding) + params_of(head)
    tokens = torch.tensor([1, 4, 4, 7])

    def closure(backward=True):
        loss = head(embedding(tokens)).sum()
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    name = type(opt).__name__
    message = rf"{name} needs dense gradients.*shape \(10, 3\).*sparse=False"
    with pytest.raises(RuntimeError, match=message):
        opt.step(closure)
    after = params_of(embedding) + params_of(head)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))


# -- checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [L1(0.05), L0Ball(k=10)], ids=repr)
def test_penalty_objects_survive_a_weights_only_checkpoint(problem, tmp_path, penalty):
    model, X, y = problem

    def train(model, opt):
        for _ in range(5):
            opt.step(closure_for(model, opt, X, y))

    groups = [
        {"params": model[0].parameters(), "penalty": penalty},
        {"params": model[2].parameters(), "penalty": "l0", "alpha": 1e-3},
    ]
    opt = SR2(groups, lr=0.5, module=model)
    train(model, opt)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    assert opt.param_groups[0]["penalty"] is penalty  # saving does not touch the live groups
    train(model, opt)

    restored = copy.deepcopy(model)
    opt2 = SR2(
        [{"params": restored[0].parameters()}, {"params": restored[2].parameters()}],
        lr=3.0, penalty=None, module=restored,
    )  # fmt: skip
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    restored.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    assert opt2.param_groups[0]["penalty"] == penalty
    assert opt2.param_groups[1]["penalty"] == "l0"
    train(restored, opt2)
    for p, q in zip(restored.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert opt2.sigma == opt.sigma


# -- non-finite gradients -----------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.1, None])
def test_non_finite_gradient_skips_the_step_and_keeps_sigma(problem, lr):
    # A NaN gradient says nothing about the step size: the step is skipped (as a
    # GradScaler skips optimizer.step()), where a non-finite *trial* loss is a rejection.
    model, X, y = problem
    opt = SR2(model.parameters(), lr=lr)
    bad = X.clone()
    bad[0, 0] = math.nan
    before = params_of(model)
    opt.step(closure_for(model, opt, bad, y))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert opt.sigma == (None if lr is None else 1 / lr)  # None: estimated on a good batch
    history = opt.diagnostics.history
    assert history["accepted"][0] == 0 and np.isnan(history["rho"][0])
    opt.step(closure_for(model, opt, X, y))
    assert np.isfinite(opt.sigma) and opt.diagnostics.history["accepted"][1] == 1


def test_checkpoint_before_the_sigma0_estimate_is_explained(problem):
    model, X, y = problem
    opt = SR2(model.parameters())
    closure = closure_for(model, opt, X, y)
    with pytest.raises(RuntimeError, match="take a step first"):
        opt.checkpoint([closure, closure])
    opt.step(closure)
    assert np.isfinite(opt.checkpoint([closure, closure])["lipschitz"])
