"""Data-parallel training of the article's CNN with ``torch.distributed`` (DDP).

One script for every scale::

    python -m bigmodel_utils.distributed --out single.json            # 1 process
    torchrun --standalone --nproc-per-node 2 -m bigmodel_utils.distributed --out ddp.json
                                                                      # 2 processes: gloo on CPUs,
                                                                      # NCCL when each rank has a GPU

Every process sees the same global shuffle of the data and takes its own slice of
each global batch (``global_batch / world_size`` images); DDP averages the gradients,
so one step of N processes equals one step of a single process on the whole global
batch, up to the order of floating-point additions. Rank 0 evaluates on the test set
and writes a JSON result (accuracy, throughput, a parameter fingerprint).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (1 process without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of one global batch (sizes must divide evenly)."""
    if len(indices) % world_size:
        raise ValueError(f"global batch of {len(indices)} does not split evenly over {world_size} processes")
    per = len(indices) // world_size
    return indices[rank * per : (rank + 1) * per]


def train(n_train: int = 60_000, epochs: int = 1, global_batch: int = 128, lr: float = 1e-3, seed: int = 0,
          threads: int | None = None) -> dict:
    """Train on this process's shards; returns rank 0's measurements (other ranks return {})."""
    from .data import load_mnist
    from .fastpath import ArticleCNN, accuracy, to_tensor

    rank, size, local = world()
    use_cuda = torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", None) != ""
    device = f"cuda:{local}" if use_cuda else "cpu"
    if threads:
        torch.set_num_threads(threads)
    if size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        (x, y), (xt, yt) = load_mnist()
        X, Y = to_tensor(x[:n_train], device), torch.from_numpy(y[:n_train]).long().to(device)
        torch.manual_seed(seed)
        net = ArticleCNN().to(device)
        model = nn.parallel.DistributedDataParallel(net) if size > 1 else net
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(seed)
        steps_per_epoch = n_train // global_batch
        if size > 1:
            dist.barrier()
        t0 = time.perf_counter()
        for _ in range(epochs):
            order = torch.randperm(n_train, generator=gen)
            for step in range(steps_per_epoch):
                idx = shard(order[step * global_batch : (step + 1) * global_batch], rank, size).to(device)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(X[idx]), Y[idx]).backward()
                opt.step()
        if use_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        if rank != 0:
            return {}
        flat = torch.cat([p.detach().flatten().cpu() for p in net.parameters()])
        return {
            "world_size": size, "backend": ("nccl" if use_cuda else "gloo") if size > 1 else "none", "device": device,
            "threads_per_process": torch.get_num_threads(), "n_train": n_train, "epochs": epochs,
            "global_batch": global_batch, "seconds": seconds,
            "images_per_second": epochs * steps_per_epoch * global_batch / seconds,
            "test_accuracy": accuracy(net, to_tensor(xt, device), torch.from_numpy(yt).long().to(device)),
            "parameters": flat.numpy().astype(np.float64).tolist() if flat.numel() <= 100_000 else [],
        }
    finally:
        if size > 1:
            dist.destroy_process_group()


def launch(processes: int, threads_per_process: int, *, n_train: int, epochs: int = 1, global_batch: int = 128,
           seed: int = 0, cpu_only: bool = True, timeout: float = 1800) -> dict:
    """Run :func:`train` in ``processes`` fresh processes (torchrun when more than one); return rank 0's result.

    Fresh processes keep the measurement honest: each run pays its own start-up,
    and the notebook's own threads do not compete with it. ``cpu_only`` (default)
    hides GPUs, so runs of 1 and N processes are comparable on any machine, a
    single-GPU one included (N processes cannot share one GPU with NCCL).
    """
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if processes < 1 or threads_per_process < 1:
        raise ValueError("processes and threads_per_process must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = ["-m", "bigmodel_utils.distributed", "--n-train", str(n_train), "--epochs", str(epochs),
                "--global-batch", str(global_batch), "--seed", str(seed), "--threads", str(threads_per_process),
                "--out", str(out)]
        if processes == 1:
            cmd = [sys.executable, *args]
        else:
            cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", str(processes), *args]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process))
        if cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ""
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} ... failed with exit status {proc.returncode}:\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bigmodel_utils.distributed", description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--global-batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--out", required=True, help="JSON file that rank 0 writes")
    a = p.parse_args(argv)
    res = train(a.n_train, a.epochs, a.global_batch, a.lr, a.seed, a.threads)
    if res:
        with open(a.out, "w") as fh:
            json.dump(res, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
