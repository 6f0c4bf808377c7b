"""SR2 as networks are trained in practice: mixed precision (bfloat16 autocast, float16
with a GradScaler), torch.compile, gradient clipping, and a step that never waits for
the GPU. CUDA tests skip without a GPU; everything else runs on the CPU."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from sr2learn._engine import _model_decrease, _ratio, _update
from sr2learn._rule import model_decrease, sr2_ratio, sr2_update
from sr2learn.penalties import L0Ball
from sr2learn.torch import SR2, optim, penalized_groups

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return tuple(
        map(torch.as_tensor, train_test_split(X, y, test_size=0.3, random_state=0, stratify=y))
    )


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def bn_dropout_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)
    )


def closure_for(model, opt, X, y, autocast=None, clip=None, scaler=None, record=None):
    """The closure of SR2's protocol, with the options of this file."""

    def closure(backward=True):
        with torch.autocast(X.device.type, dtype=autocast, enabled=autocast is not None):
            loss = nn.functional.cross_entropy(model(X), y)
        if record is not None:
            record.append(loss.detach().clone())
        if backward:
            opt.zero_grad()
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
        return loss

    return closure


def train(model, opt, data, epochs=6, batch_size=64, seed=0, **options):
    Xtr, _, ytr, _ = data
    torch.manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(Xtr), device=Xtr.device)
        for i in range(0, len(Xtr), batch_size):
            idx = perm[i : i + batch_size]
            opt.step(closure_for(model, opt, Xtr[idx], ytr[idx], **options))


def accuracy(model, data):
    _, Xte, _, yte = data
    with torch.no_grad():
        return (model(Xte).argmax(1) == yte).float().mean().item()


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# -- the rule: one formula on floats, tensors and numba --------------------------------------


def test_rule_gives_the_same_numbers_on_floats_tensors_and_in_numba():
    values = [0.0, 1e-300, 0.3, 2.5, -0.7, math.inf, -math.inf, math.nan]
    f64 = torch.float64
    for actual in values:
        for predicted in values:
            for scale in (0.0, 3.0):
                expected = _ratio(actual, predicted, scale, 2.2e-16)
                on_floats = sr2_ratio(actual, predicted, scale, 2.2e-16)
                on_tensors = sr2_ratio(
                    torch.tensor(actual, dtype=f64), torch.tensor(predicted, dtype=f64),
                    torch.tensor(scale, dtype=f64), 2.2e-16,
                )  # fmt: skip
                np.testing.assert_array_equal([on_floats, float(on_tensors)], [expected] * 2)
    thresholds = (7.5e-4, 0.99, 5.56, 0.8, 0.5, 50.0)
    for rho in [-1.0, 0.0, 7.5e-4, 0.5, 0.99, 1.0, math.nan]:
        for sigma in [0.3, 2.0, 40.0]:
            expected = _update(rho, sigma, *thresholds)
            on_floats = sr2_update(rho, sigma, *thresholds)
            t = sr2_update(torch.tensor(rho, dtype=f64), torch.tensor(sigma, dtype=f64),
                           *thresholds)  # fmt: skip
            assert on_floats == expected
            assert (bool(t[0]), float(t[1]), bool(t[2])) == expected
    for decrease in ([1.0, 0.5, -0.1, 1.0, 0.1], [1.0, 0.5, -0.1, 1.0, 10.0]):
        expected = _model_decrease(*decrease)
        assert model_decrease(*decrease) == expected
        assert float(model_decrease(*torch.tensor(decrease, dtype=f64))) == expected


# -- no host synchronisation ------------------------------------------------------------------


_HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__",
               "__index__", "__array__")  # fmt: skip


@pytest.mark.parametrize("penalty", ["l1", "l0", "l1/2", "l2/3", L0Ball(k=100)],
                         ids=["l1", "l0", "l1/2", "l2/3", "l0-ball"])  # fmt: skip
@pytest.mark.parametrize("lr", [0.05, None])
def test_step_reads_no_tensor_value_on_the_host(digits, monkeypatch, penalty, lr):
    # The decision as on a GPU, where a host read waits for the device: every way of
    # reading a tensor's value is forbidden during the step (the first step of lr=None
    # estimates sigma0, which reads, once).
    Xtr, _, ytr, _ = digits
    monkeypatch.setattr(optim, "_host_decides", lambda device: False)  # as on a GPU
    model = bn_dropout_net()
    opt = SR2(penalized_groups(model, penalty, 1e-3), lr=lr, module=model)
    opt.step(closure_for(model, opt, Xtr[:64], ytr[:64]))

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host during the step")

    with monkeypatch.context() as patch:
        for name in _HOST_READS:
            patch.setattr(torch.Tensor, name, host_read)
        for i in range(1, 6):
            opt.step(closure_for(model, opt, Xtr[64 * i : 64 * i + 64], ytr[64 * i : 64 * i + 64]))
    history = opt.diagnostics.history  # the trace arrives when read
    assert len(history["sigma"]) == 6
    if not isinstance(penalty, L0Ball):  # from a dense start, R(w) = inf for the ball
        assert np.all(np.isfinite(history["rho"]))


@pytest.mark.parametrize("penalty", ["l1", "l0", "l1/2"])
def test_decisions_on_the_host_and_on_the_device_take_the_same_steps(digits, monkeypatch,
                                                                     penalty):  # fmt: skip
    # A CPU reads the decision (free there); a GPU keeps it on the device. Both must give
    # the same trajectory, rejections and rollbacks included (lr = 30 rejects some steps).
    runs = []
    for on_host in (True, False):
        monkeypatch.setattr(optim, "_host_decides", lambda device, on_host=on_host: on_host)
        model = bn_dropout_net()
        opt = SR2(penalized_groups(model, penalty, 1e-3), lr=30.0, module=model)
        train(model, opt, digits, epochs=1)
        runs.append((model.state_dict(), opt.diagnostics, opt.param_groups[0]["sigma"]))
    (host, host_diag, host_sigma), (device, device_diag, device_sigma) = runs
    assert isinstance(host_sigma, float) and isinstance(device_sigma, torch.Tensor)
    assert host_sigma == device_sigma.item()
    for key in host:
        assert torch.equal(host[key], device[key]), key
    for key, values in host_diag.history.items():
        np.testing.assert_array_equal(values, device_diag.history[key], err_msg=key)
    assert 0 < host_diag.history["accepted"].mean() < 1  # both kinds of decision
    assert host_diag.n_sigma_clamps == device_diag.n_sigma_clamps


@CUDA
@pytest.mark.parametrize("lr", [0.05, None])
def test_step_does_not_synchronise_with_the_gpu(digits, lr):
    data = [t.cuda() for t in digits]
    Xtr, _, ytr, _ = data
    model = bn_dropout_net().cuda()
    opt = SR2(penalized_groups(model, "l1", 1e-3), lr=lr, module=model)
    opt.step(closure_for(model, opt, Xtr[:64], ytr[:64]))  # lr=None: the estimate reads
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 6):
            opt.step(closure_for(model, opt, Xtr[64 * i : 64 * i + 64], ytr[64 * i : 64 * i + 64]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(opt.diagnostics.history["sigma"]) == 6


# -- mixed precision --------------------------------------------------------------------------


def test_bfloat16_autocast_trains_with_the_default_sr2(digits):
    model = mlp()
    opt = SR2(penalized_groups(model, "l1", 1e-4), module=model)
    train(model, opt, digits, autocast=torch.bfloat16)
    sigma0 = opt.diagnostics.history["sigma"][0]
    assert np.isfinite(sigma0) and sigma0 > 0
    assert opt.diagnostics.history["accepted"].mean() > 0.8
    assert accuracy(model, digits) >= 0.9


@pytest.mark.parametrize("lr", [0.3, None])
def test_grad_scaler_unscales_exactly(digits, lr):
    # A power-of-two scale is exact in float32: with the GradScaler the trajectory,
    # sigma0 estimate included, is the one without it.
    runs = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**16)):
        model = mlp()
        opt = SR2(penalized_groups(model, "l1", 1e-3), lr=lr, module=model)
        Xtr, _, ytr, _ = digits
        for i in range(5):
            closure = closure_for(model, opt, Xtr[64 * i : 64 * i + 64],
                                  ytr[64 * i : 64 * i + 64], scaler=scaler)  # fmt: skip
            opt.step(closure, grad_scaler=scaler)
            if scaler is not None:
                scaler.update()
        runs.append((params_of(model), opt.diagnostics.history["sigma"]))
    for p, q in zip(runs[0][0], runs[1][0], strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def mse_closure(model, opt, X, y, scaler):
    def closure(backward=True):
        loss = nn.functional.mse_loss(model(X), y)
        if backward:
            opt.zero_grad()
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss

    return closure


@pytest.mark.parametrize("lr", [0.3, None])
def test_grad_scaler_overflow_skips_the_step_and_keeps_sigma(lr):
    # Large targets and a huge first scale overflow float32 in the first backward: that
    # step is skipped (parameters and sigma as they were), the scaler backs off, and
    # training goes on exactly as a run that never saw that batch.
    torch.manual_seed(0)
    X, y = torch.randn(4, 32, 8), 1e3 * torch.randn(4, 32, 3)
    runs = []
    for scaler in (torch.amp.GradScaler("cpu", init_scale=2.0**126, backoff_factor=2.0**-100),
                   None):  # fmt: skip
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        opt = SR2(model.parameters(), lr=lr, penalty=None)
        before = params_of(model)
        for i in range(4) if scaler is not None else range(1, 4):
            opt.step(mse_closure(model, opt, X[i], y[i], scaler), grad_scaler=scaler)
            if scaler is not None:
                if i == 0:  # the overflow: nothing moved
                    assert all(map(torch.equal, params_of(model), before))
                    assert opt.sigma == (None if lr is None else 1 / lr)
                scaler.update()
        runs.append((params_of(model), opt.diagnostics.history))
    (scaled, history), (reference, ref_history) = runs
    assert history["accepted"][0] == 0 and np.isnan(history["rho"][0])
    for p, q in zip(scaled, reference, strict=True):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(history["sigma"][1:], ref_history["sigma"])


def test_float16_autocast_with_grad_scaler_recipe_on_cpu(digits):
    model = mlp()
    opt = SR2(penalized_groups(model, "l1", 1e-4), module=model)
    scaler = torch.amp.GradScaler("cpu")
    Xtr, _, ytr, _ = digits
    torch.manual_seed(0)
    for _ in range(6):
        perm = torch.randperm(len(Xtr))
        for i in range(0, len(Xtr), 64):
            idx = perm[i : i + 64]
            closure = closure_for(model, opt, Xtr[idx], ytr[idx], autocast=torch.float16,
                                  scaler=scaler)  # fmt: skip
            opt.step(closure, grad_scaler=scaler)
            scaler.update()
    assert accuracy(model, digits) >= 0.9


@CUDA
def test_float16_autocast_with_grad_scaler_recipe_on_cuda(digits):
    data = [t.cuda() for t in digits]
    model = mlp().cuda()
    opt = SR2(penalized_groups(model, "l1", 1e-4), module=model)
    scaler = torch.amp.GradScaler("cuda")
    Xtr, _, ytr, _ = data
    torch.manual_seed(0)
    for _ in range(6):
        perm = torch.randperm(len(Xtr), device="cuda")
        for i in range(0, len(Xtr), 64):
            idx = perm[i : i + 64]
            closure = closure_for(model, opt, Xtr[idx], ytr[idx], autocast=torch.float16,
                                  scaler=scaler)  # fmt: skip
            opt.step(closure, grad_scaler=scaler)
            scaler.update()
    assert accuracy(model, data) >= 0.9
    assert np.isfinite(opt.sigma)


# -- gradient clipping ------------------------------------------------------------------------


def test_clipping_in_the_closure_clips_the_step(digits):
    Xtr, _, ytr, _ = digits
    model = mlp()
    opt = SR2(model.parameters(), sigma0=4.0, penalty=None)
    before = params_of(model)
    opt.step(closure_for(model, opt, Xtr[:64], ytr[:64], clip=1e-2))
    assert opt.diagnostics.history["accepted"][0] == 1
    grads = [p.grad for p in model.parameters()]
    assert torch.cat([g.reshape(-1) for g in grads]).norm() == pytest.approx(1e-2, rel=1e-4)
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - g / 4.0)  # the clipped g: s = -g / sigma


def test_clipping_trains_with_the_default_sr2(digits):
    model = mlp()
    opt = SR2(penalized_groups(model, "l1", 1e-4), module=model)
    train(model, opt, digits, clip=1.0)
    assert accuracy(model, digits) >= 0.9


# -- torch.compile ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiler():
    """Skip when torch.compile cannot build kernels here (e.g. no C++ compiler)."""
    try:
        torch.compile(lambda x: x * 2.0 + 1.0)(torch.ones(3))
    except Exception as err:  # noqa: BLE001 - any failure means: not on this platform
        pytest.skip(f"torch.compile is unavailable: {type(err).__name__}: {err}")
    return torch.compile


@pytest.mark.slow
def test_compiled_module_sees_the_same_dropout_masks_and_trains(digits, compiler):
    Xtr, _, ytr, _ = digits
    model = bn_dropout_net()
    compiled = compiler(model)
    # sigma0 = 1e8: w + s is w to float32 rounding, so the two passes of a step agree
    # exactly when they draw the same dropout masks (different masks move the loss ~1%).
    opt = SR2(penalized_groups(model, "l1", 1e-4), sigma0=1e8, module=model)
    losses = []
    for i in range(3):
        opt.step(closure_for(compiled, opt, Xtr[64 * i : 64 * i + 64],
                             ytr[64 * i : 64 * i + 64], record=losses))  # fmt: skip
    for at_w, at_trial in zip(losses[0::2], losses[1::2], strict=True):
        assert at_trial.item() == pytest.approx(at_w.item(), rel=1e-5)

    model = bn_dropout_net()
    compiled = compiler(model)
    opt = SR2(penalized_groups(model, "l1", 1e-4), module=model)  # sigma0 estimated
    train(compiled, opt, digits, epochs=4)
    assert np.isfinite(opt.diagnostics.history["sigma"][0])
    model.eval()
    assert accuracy(model, digits) >= 0.85
