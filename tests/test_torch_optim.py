"""sr2learn.torch: SR2 (rollback, randomness, resume, sparsity), the baselines, pruning."""

import copy

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from sr2learn.torch import SR2, ProxGEN, ProxSGD, penalized_groups
from sr2learn.torch.pruning import prune, pruning_curve, sparsity_report

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_closure(model, opt, X, y, record=None):
    def closure(backward=True):
        out = model(X)
        if record is not None:
            record.append(torch.rand(1).item())
        loss = nn.functional.cross_entropy(out, y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    return closure


def bn_dropout_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)
    )


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)


def test_penalized_groups_split():
    model = bn_dropout_net()
    pen, free = penalized_groups(model, "l0", 1e-3)
    assert pen["penalty"] == "l0" and free["penalty"] is None
    assert {id(p) for p in pen["params"]} == {id(model[0].weight), id(model[4].weight)}
    assert len(free["params"]) == 4  # two biases, BN weight and bias


def test_rejected_step_restores_parameters_and_buffers_exactly(batch):
    X, y = batch
    model = bn_dropout_net()
    model.train()
    # sigma0 = 1e-6: a step of length |g| * 1e6 blows the loss up and must be rejected.
    opt = SR2(penalized_groups(model, "l1", 1e-3), sigma0=1e-6, module=model)
    before = snapshot(model)
    opt.step(make_closure(model, opt, X, y))
    h = opt.diagnostics.history
    assert h["accepted"][0] == 0.0
    assert_same_state(snapshot(model), before)  # weights and BN running stats and counter
    assert opt.sigma == pytest.approx(5.56e-6)


def test_accepted_step_moves_buffers_once_like_sgd(batch):
    X, y = batch
    model = bn_dropout_net()
    reference = copy.deepcopy(model)
    opt = SR2(penalized_groups(model, "l1", 1e-3), lr=0.1, module=model)
    torch.manual_seed(5)
    opt.step(make_closure(model, opt, X, y))
    assert opt.diagnostics.history["accepted"][0] == 1.0
    torch.manual_seed(5)
    reference.train()
    reference(X)  # one forward pass at w: the running statistics SGD would have
    bn, ref_bn = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref_bn.running_mean)
    assert torch.equal(bn.running_var, ref_bn.running_var)
    assert int(bn.num_batches_tracked) == 1


def test_both_passes_see_the_same_randomness_and_the_stream_advances_once(batch):
    X, y = batch
    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, "l1", 1e-3), lr=0.1, module=model)
    draws = []
    torch.manual_seed(11)
    opt.step(make_closure(model, opt, X, y, record=draws))
    after_step = torch.rand(1).item()
    assert len(draws) == 2 and draws[0] == draws[1]  # dropout masks drawn identically too
    torch.manual_seed(11)
    make_closure(model, opt, X, y, record=[])(backward=False)  # one pass of the same forward
    assert torch.rand(1).item() == after_step


def test_resume_from_checkpoint_continues_the_identical_trajectory(batch, tmp_path):
    X, y = batch

    def train(model, opt, steps, seed):
        torch.manual_seed(seed)
        for _ in range(steps):
            opt.step(make_closure(model, opt, X, y))

    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, "l0", 1e-3), lr=0.5, module=model)
    train(model, opt, 10, seed=1)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    train(model, opt, 10, seed=2)

    restored = bn_dropout_net(seed=99)
    opt2 = SR2(penalized_groups(restored, "l0", 1e-3), lr=123.0, module=restored)
    state = torch.load(tmp_path / "ckpt.pt")
    restored.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    assert opt2.sigma == opt.diagnostics.history["sigma"][10]
    train(restored, opt2, 10, seed=2)
    assert_same_state(snapshot(restored), snapshot(model))
    assert opt2.sigma == opt.sigma


def test_prox_and_penalty_cover_the_same_parameters_and_no_ascent_is_accepted(batch):
    X, y = batch
    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, "l1", 1e-2), lr=1.0, module=model)
    model.eval()  # deterministic forward: F_B(w+s) can be checked after the fact
    for _ in range(30):
        closure = make_closure(model, opt, X, y)
        before = closure(backward=False).item() + 1e-2 * sum(
            p.abs().sum().item() for p in opt.param_groups[0]["params"]
        )
        opt.step(closure)
        after = closure(backward=False).item() + 1e-2 * sum(
            p.abs().sum().item() for p in opt.param_groups[0]["params"]
        )
        if opt.diagnostics.history["accepted"][-1]:
            assert after <= before + 1e-6
    assert np.all(opt.diagnostics.history["xi"] > 0)


def test_l0_gives_exact_zeros_and_small_net_on_digits_is_accurate_and_sparse():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = map(
        torch.as_tensor, train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    )
    results = {}
    for penalty, alpha in [("l1", 3e-3), ("l0", 3e-4)]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = SR2(penalized_groups(model, penalty, alpha), lr=0.5, module=model)
        for _ in range(30):
            perm = torch.randperm(len(Xtr))
            for i in range(0, len(Xtr), 64):
                idx = perm[i : i + 64]
                opt.step(make_closure(model, opt, Xtr[idx], ytr[idx]))
        accuracy = (model(Xte).argmax(1) == yte).float().mean().item()
        results[penalty] = (accuracy, sparsity_report(model)["total"]["zero_fraction"])
    accuracy, zeros = results["l1"]
    assert accuracy >= 0.90 and zeros >= 0.50
    accuracy, zeros = results["l0"]
    assert accuracy >= 0.90 and zeros >= 0.2  # exact zeros from hard thresholding


def test_lr_sets_the_first_step_and_sigma_is_in_the_state_dict():
    model = nn.Linear(3, 2)
    opt = SR2(model.parameters(), lr=0.25)
    assert opt.sigma == 4.0
    assert opt.state_dict()["param_groups"][0]["sigma"] == 4.0
    assert SR2(model.parameters(), lr=0.25, sigma0=2.0).sigma == 2.0
    with pytest.raises(ValueError, match="Unknown penalty"):
        SR2(model.parameters(), penalty="l7")
    with pytest.raises(RuntimeError, match="closure"):
        SR2(model.parameters()).step()


def test_nonfinite_trial_loss_is_rejected(batch):
    X, y = batch
    model = nn.Linear(6, 3)
    opt = SR2(model.parameters(), sigma0=1.0)

    calls = []

    def closure(backward=True):
        loss = nn.functional.cross_entropy(model(X), y)
        calls.append(backward)
        if backward:
            opt.zero_grad()
            loss.backward()
            return loss
        return loss * float("nan")  # the trial pass fails

    before = snapshot(model)
    opt.step(closure)
    assert calls == [True, False]
    assert np.isnan(opt.diagnostics.history["rho"][0])
    assert_same_state(snapshot(model), before)


# -- baselines ----------------------------------------------------------------------------


def test_proxgen_and_proxsgd_plain_settings_are_proximal_sgd():
    torch.manual_seed(0)
    w0 = torch.randn(20)
    g = torch.randn(20)
    for cls in (ProxGEN, ProxSGD):
        p = nn.Parameter(w0.clone())
        opt = cls([p], lr=0.1, penalty="l1", alpha=0.5)
        p.grad = g.clone()
        opt.step()
        v = w0 - 0.1 * g
        expected = torch.sign(v) * torch.clamp(v.abs() - 0.1 * 0.5, min=0)
        torch.testing.assert_close(p.detach(), expected)


def test_proxgen_l0_and_preconditioner_and_momentum():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(200))
    opt = ProxGEN([p], lr=0.05, penalty="l0", alpha=0.5, momentum=0.9, preconditioner=True)
    for _ in range(20):
        p.grad = 0.1 * torch.randn(200)
        opt.step()
    assert (p == 0).sum() > 0
    assert set(opt.state[p]) == {"momentum", "second_moment"}
    with pytest.raises(ValueError, match="supports penalty"):
        ProxSGD([nn.Parameter(torch.zeros(2))], lr=0.1, penalty="l0")


# -- pruning ------------------------------------------------------------------------------


def test_sparsity_report_prune_and_curve():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1e-4, 0.5, 2.0]] * 3))
        model[2].weight.copy_(torch.tensor([[0.0, 0.0, 1e-2]] * 2))
    report = sparsity_report(model)
    assert [layer["name"] for layer in report["layers"]] == ["0", "2"]
    assert report["total"] == {
        "n_weights": 18, "zeros": 7, "small": 10,
        "zero_fraction": 7 / 18, "small_fraction": 10 / 18,
    }  # fmt: skip
    curve = pruning_curve(model, evaluate=lambda m: float(m[0].weight.abs().sum()))
    assert [r["threshold"] for r in curve] == [0.0] + [10.0**-k for k in range(1, 9)]
    fractions = [r["zero_fraction"] for r in curve]
    assert fractions[0] == 7 / 18 and fractions[1] == 12 / 18  # 0.1 prunes 1e-4 and 1e-2
    assert sparsity_report(model)["total"]["zeros"] == 7  # the curve pruned copies
    assert prune(model, 1e-3) == 10


@CUDA
def test_sr2_on_cuda_matches_cpu(batch):
    X, y = batch
    results = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).to(device)
        opt = SR2(penalized_groups(model, "l1", 1e-3), lr=0.5, module=model)
        for _ in range(20):
            opt.step(make_closure(model, opt, X.to(device), y.to(device)))
        results.append((model[0].weight.detach().cpu(), opt.diagnostics.history["accepted"]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_checkpoint_records_labelled_estimates_and_leaves_training_untouched(batch):
    X, y = batch
    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, "l1", 1e-3), lr=0.5, module=model)
    for _ in range(5):
        opt.step(make_closure(model, opt, X, y))
    before = snapshot(model)
    torch.manual_seed(3)
    expected_next = torch.rand(1).item()
    torch.manual_seed(3)
    closures = [make_closure(model, opt, X[i::3], y[i::3]) for i in range(3)]
    last = opt.checkpoint(closures)
    assert torch.rand(1).item() == expected_next  # the random stream is untouched
    assert_same_state(snapshot(model), before)  # parameters and BN statistics too
    estimates = ("lipschitz", "variance", "dist", "trial_step_sq", "trial_grad_error_sq", "bound")
    assert all(np.isfinite(last[k]) for k in estimates)
    assert last["lipschitz"] > 0 and last["variance"] > 0 and last["iteration"] == 5
    # A network has no duality gap and no scale-free criterion: both are labelled NaN.
    assert np.isnan(last["gap"]) and np.isnan(last["criterion"])
    # The step is drawn from the mean of the 3 batch gradients: its error is V / 3, and
    # the Theorem 4 terms are computed from the recorded estimates.
    assert last["trial_step_sq"] > 0
    assert last["trial_grad_error_sq"] == pytest.approx(last["variance"] / 3, rel=1e-12)
    C = 3 * (last["lipschitz"] ** 2 + last["sigma_max"] ** 2)
    assert last["C"] == pytest.approx(C, rel=1e-12)
    expected = C * last["trial_step_sq"] + 3 * last["trial_grad_error_sq"]
    assert last["bound"] == pytest.approx(expected, rel=1e-12)
    assert opt.diagnostics.lipschitz_is_estimate
    assert "estimated" in opt.diagnostics.summary()
    with pytest.raises(ValueError, match="at least two"):
        opt.checkpoint(closures[:1])


# -- sigma0 from the first batch (lr=None, sigma0=None) -------------------------------------


def counting_closure(model, opt, X, y, calls, loss_scale=1.0, draws=None):
    def closure(backward=True):
        calls.append(backward)
        if draws is not None:
            draws.append(torch.rand(1).item())
        loss = loss_scale * nn.functional.cross_entropy(model(X), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    return closure


def make_mse_closure(model, opt, X, y):
    def closure(backward=True):
        loss = nn.functional.mse_loss(model(X), y)
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    return closure


def test_default_sigma0_is_the_top_curvature_of_the_first_batch():
    # A smooth float64 model: the estimate must match the exact largest |eigenvalue| of
    # the batch Hessian, computed here from the full Hessian.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    X, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        w1, b1, w2, b2 = map(torch.Tensor.view, flat.split([48, 8, 24, 3]), shapes)
        return nn.functional.mse_loss(torch.tanh(X @ w1.T + b1) @ w2.T + b2, y)

    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat)).abs().max()
    opt = SR2(model.parameters())
    assert opt.sigma is None and np.isnan(opt.param_groups[0]["lr"])
    opt.step(make_mse_closure(model, opt, X, y))
    sigma0 = opt.diagnostics.history["sigma"][0]
    assert sigma0 == pytest.approx(float(exact), rel=0.05)
    group = opt.param_groups[0]
    assert group["lr"] == 1 / sigma0 and isinstance(group["lr"], float)
    assert group["sigma_min"] == sigma0 / 1e10 and group["sigma_max"] == sigma0 * 1e10


def test_default_sigma0_is_estimated_once_and_leaves_no_other_trace(batch):
    X, y = batch
    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, "l1", 1e-3), module=model)
    calls, draws = [], []
    torch.manual_seed(3)
    for _ in range(3):
        opt.step(counting_closure(model, opt, X, y, calls, draws=draws))
    after = torch.rand(1).item()
    # 1 + 10 gradient passes and the trial pass once, then two passes a step; every pass
    # of a step sees the same random state (the same dropout masks).
    assert calls == [True] * 11 + [False] + [True, False] * 2
    assert len(set(draws[:12])) == 1 and draws[12] == draws[13] != draws[0]
    sigma0 = opt.diagnostics.history["sigma"][0]
    assert np.isfinite(sigma0) and sigma0 > 0

    # An optimizer given that sigma0 takes the very same steps: the estimate restored the
    # parameters, gradients, BatchNorm statistics and random state.
    reference = bn_dropout_net()
    ref_opt = SR2(penalized_groups(reference, "l1", 1e-3), sigma0=sigma0, module=reference)
    torch.manual_seed(3)
    for _ in range(3):
        ref_opt.step(counting_closure(reference, ref_opt, X, y, [], draws=[]))
    assert torch.rand(1).item() == after
    assert_same_state(snapshot(model), snapshot(reference))
    np.testing.assert_array_equal(
        opt.diagnostics.history["sigma"], ref_opt.diagnostics.history["sigma"]
    )


def test_default_sigma0_scales_with_the_loss(batch):
    X, y = batch
    sigmas = []
    for scale in (1.0, 8.0):  # a power of two: every gradient scales exactly
        model = bn_dropout_net()
        opt = SR2(penalized_groups(model, "l1", 1e-3), module=model)
        torch.manual_seed(0)
        opt.step(counting_closure(model, opt, X, y, [], loss_scale=scale))
        sigmas.append(opt.diagnostics.history["sigma"][0])
    assert sigmas[1] == pytest.approx(8 * sigmas[0], rel=1e-6)


@pytest.mark.parametrize("slope", [1.0, 0.0])
def test_default_sigma0_falls_back_on_a_loss_without_curvature(batch, slope):
    # A loss linear in the parameters has a zero Hessian: sigma0 = ||g|| / max(||w||, 1),
    # a first step as long as the weights, and 1 when the gradient is zero too.
    X, _ = batch
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    with torch.no_grad():
        model.weight.mul_(10.0)  # ||w|| > 1
    opt = SR2(model.parameters(), penalty=None)

    def closure(backward=True):
        loss = slope * model(X).mean()
        if backward:
            opt.zero_grad()
            loss.backward()
        return loss

    w_norm = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).norm()
    opt.step(closure)
    g_norm = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm()
    expected = float(g_norm / max(w_norm, 1.0)) if slope else 1.0
    assert opt.diagnostics.history["sigma"][0] == pytest.approx(expected, rel=1e-6)
    for _ in range(4):
        opt.step(closure)
    assert opt.diagnostics.history["accepted"].all()  # a linear loss takes every step


def test_state_dict_round_trips_before_and_after_the_estimate(batch, tmp_path):
    X, y = batch

    def fresh(**kwargs):
        model = bn_dropout_net()
        return model, SR2(penalized_groups(model, "l0", 1e-3), module=model, **kwargs)

    model, opt = fresh()
    torch.save(opt.state_dict(), tmp_path / "before.pt")
    torch.manual_seed(1)
    opt.step(counting_closure(model, opt, X, y, []))
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "after.pt")
    torch.manual_seed(2)
    for _ in range(3):
        opt.step(counting_closure(model, opt, X, y, []))

    # Loaded before the estimate: an optimizer built with a lr estimates as the first did.
    other, other_opt = fresh(lr=0.3)
    other_opt.load_state_dict(torch.load(tmp_path / "before.pt", weights_only=True))
    assert other_opt.sigma is None
    torch.manual_seed(1)
    other_opt.step(counting_closure(other, other_opt, X, y, []))
    assert other_opt.sigma == opt.diagnostics.history["sigma"][1]

    # Loaded after it: a default optimizer does not estimate again, and resumes exactly.
    resumed, resumed_opt = fresh()
    state = torch.load(tmp_path / "after.pt", weights_only=True)
    resumed.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["opt"])
    calls = []
    torch.manual_seed(2)
    for _ in range(3):
        resumed_opt.step(counting_closure(resumed, resumed_opt, X, y, calls))
    assert calls == [True, False] * 3
    assert_same_state(snapshot(resumed), snapshot(model))
    assert resumed_opt.sigma == opt.sigma


def test_default_sr2_trains_an_mlp_without_a_learning_rate():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = map(
        torch.as_tensor, train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = SR2(penalized_groups(model, "l0", 3e-4), module=model)
    for _ in range(10):
        perm = torch.randperm(len(Xtr))
        for i in range(0, len(Xtr), 64):
            idx = perm[i : i + 64]
            opt.step(make_closure(model, opt, Xtr[idx], ytr[idx]))
    accuracy = (model(Xte).argmax(1) == yte).float().mean().item()
    assert accuracy >= 0.9 and sparsity_report(model)["total"]["zero_fraction"] >= 0.2
