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
