"""SR2 under DistributedDataParallel: two CPU processes with gloo on 127.0.0.1."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sr2learn.torch import SR2, penalized_groups

WORLD = 2
STEPS = 15


def make_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(STEPS, WORLD * 16, 8, generator=g)
    y = torch.randint(0, 3, (STEPS, WORLD * 16), generator=g)
    return X, y


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))


def train(model, opt, batches):
    for X, y in batches:

        def closure(backward=True, X=X, y=y):
            loss = nn.functional.cross_entropy(model(X), y)
            if backward:
                opt.zero_grad()
                loss.backward()
            return loss

        opt.step(closure)


def _worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)  # fmt: skip
    try:
        torch.set_num_threads(1)
        X, y = make_data()
        model = DistributedDataParallel(make_model())
        opt = SR2(penalized_groups(model.module, "l1", 1e-2), lr=50.0, module=model.module)
        shard = slice(rank * 16, (rank + 1) * 16)  # each rank sees its own half of a batch
        train(model, opt, [(X[t, shard], y[t, shard]) for t in range(STEPS)])
        torch.save(
            {"params": [p.detach() for p in model.module.parameters()],
             "accepted": opt.diagnostics.history["accepted"], "sigma": opt.sigma},
            f"{out}/rank{rank}.pt",
        )  # fmt: skip
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_ranks_agree_and_match_the_single_process_run(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    # Every rank took the same decisions and holds identical parameters.
    assert (ranks[0]["accepted"] == ranks[1]["accepted"]).all()
    assert ranks[0]["sigma"] == ranks[1]["sigma"]
    for a, b in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        assert torch.equal(a, b)
    assert 0 < ranks[0]["accepted"].sum() < STEPS  # both kinds of decision were exercised
    # Averaged gradients and all-reduced losses: the same as one process on whole batches.
    X, y = make_data()
    model = make_model()
    opt = SR2(penalized_groups(model, "l1", 1e-2), lr=50.0, module=model)
    train(model, opt, [(X[t], y[t]) for t in range(STEPS)])
    assert (opt.diagnostics.history["accepted"] == ranks[0]["accepted"]).all()
    for a, b in zip(model.parameters(), ranks[0]["params"], strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)
