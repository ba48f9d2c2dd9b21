#!/usr/bin/python3
"""A data-parallel MLP on the 8x8 digits data set, trained with PyTorch DDP.

gridrun starts it as a group task with the torchrun environment contract
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
MASTER_PORT), plus:

  GRIDRUN_CKPT_DIR        directory for checkpoints, shared by all ranks
                          (else --ckpt-dir, else ./ckpt)
  GRIDRUN_RESTART_COUNT   0 on the first start, +1 per restart of the group
  GRIDRUN_PREEMPT_SIGNAL  the preemption notice: USR2, SIGUSR2 or a number
                          (default SIGUSR2); SIGTERM is treated the same

It follows the torchrun contract, so torchrun can start it as well:

  torchrun --nproc-per-node 2 examples/ddp/train_ddp.py --ckpt-dir /tmp/ck

Started by neither, it runs as one process.

The C example examples/mlp/mlp-digits.c does the same with libgridrun; this
script uses its split of the data, its batch order and hyper-parameters.

Every --ckpt-every steps rank 0 saves the model, the optimizer (momentum
buffers included), the step and the RNG state to CKPT_DIR/ckpt.pt, written
to a temporary file and renamed, so that a crash never leaves half a
checkpoint.  A started run resumes from ckpt.pt when there is one.  The
batch of each step depends on the seed and the step only, so a run that
was killed, preempted or crashed and then resumed ends bit for bit where an
uninterrupted run with the same seed and world size does.

Output of rank 0, one line each:
  starting fresh (restart 0)           or   resumed from step 150 (restart 1)
  preempted at step 87: checkpoint saved    (then every rank exits 0)
  final_loss=0x1.1b2fa86aec3ebp-4 test_acc=0.9526 steps=300
The last line is the mean cross-entropy over the training set (exact, as
float.hex()) and the test accuracy; it is also written to CKPT_DIR/final.txt.
"""
import argparse
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

NFEAT, NCLASS = 64, 10
MASK64 = (1 << 64) - 1
HERE = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    """A usage or input error: say what is wrong and exit 2."""
    print(f"train_ddp: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def number(kind, minimum):
    """An argparse type: a number of the given kind, at least minimum."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number")
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"'{text}' is less than {minimum}")
        return value
    return parse


def parse_args():
    p = argparse.ArgumentParser(description="DDP training of an MLP on the 8x8 digits")
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "share", "gridrun", "digits.csv"),
                   help="the digits CSV (default: share/gridrun/digits.csv of the source tree)")
    p.add_argument("--ckpt-dir", help="checkpoint directory when GRIDRUN_CKPT_DIR is not set (default ./ckpt)")
    p.add_argument("--steps", type=number(int, 0), default=300, help="steps to train (default 300)")
    p.add_argument("--ckpt-every", type=number(int, 1), default=50, help="checkpoint period (default 50)")
    p.add_argument("--batch", type=number(int, 1), default=64, help="global batch size (default 64)")
    p.add_argument("--hidden", type=number(int, 1), default=64, help="hidden units (default 64)")
    p.add_argument("--lr", type=number(float, 1e-12), default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--momentum", type=number(float, 0.0), default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--seed", type=number(int, 0), default=1, help="seed of the split, order and weights (default 1)")
    p.add_argument("--sleep", type=number(float, 0.0), default=0.0, help="seconds to sleep per step (testing)")
    p.add_argument("--fail-once-at", type=number(int, 1), metavar="STEP",
                   help="testing: on the first start, rank 1 exits 3 on reaching STEP")
    return p.parse_args()


def shuffled(items, seed):
    """Fisher-Yates shuffle driven by splitmix64, as in mlp-digits.c: the same
    permutation on every rank, every run and every platform."""
    a, s = list(items), seed & MASK64
    for i in range(len(a) - 1, 0, -1):
        s = (s + 0x9E3779B97F4A7C15) & MASK64
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        j = (z ^ (z >> 31)) % (i + 1)
        a[i], a[j] = a[j], a[i]
    return a


def load_digits(path):
    """64 pixels 0..16 and a class 0..9 a line; pixels scaled to [0, 1]."""
    if not os.path.isfile(path):
        fail(f"data file '{path}' not found (give its path with --data)")
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except OSError as e:
        fail(f"cannot read data file '{path}': {e}")
    except ValueError as e:
        fail(f"data file '{path}' is not a CSV of integers: {e}")
    if data.shape[1] != NFEAT + 1 or len(data) < 100:
        fail(f"data file '{path}': expected at least 100 lines of {NFEAT + 1} fields, got {data.shape}")
    x, y = data[:, :NFEAT], data[:, NFEAT]
    if x.min() < 0 or x.max() > 16 or y.min() < 0 or y.max() >= NCLASS:
        fail(f"data file '{path}': pixels must be 0..16 and classes 0..9")
    return torch.from_numpy(x / 16.0), torch.from_numpy(y)


def preempt_signal():
    """The signal named by GRIDRUN_PREEMPT_SIGNAL: USR2, SIGUSR2 or 12."""
    name = os.environ.get("GRIDRUN_PREEMPT_SIGNAL", "").strip().upper() or "SIGUSR2"
    try:
        sig = signal.Signals(int(name)) if name.isdigit() else \
            signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        sig = None
    if sig in (None, signal.SIGKILL, signal.SIGSTOP):
        fail(f"GRIDRUN_PREEMPT_SIGNAL={name} is not a signal that can be caught")
    return sig


def write_atomically(path, write):
    """write(f) into a temporary file next to path, fsync it, rename it over
    path and fsync the directory: readers see the old file or the new one."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main():
    args = parse_args()
    # The torchrun contract; without it, run as a single process.
    env = os.environ
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        env.setdefault(key, value)
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        restart = int(env.get("GRIDRUN_RESTART_COUNT") or 0)
        threads = int(env.get("OMP_NUM_THREADS") or 1)
    except ValueError as e:
        fail(f"bad environment: {e}")
    if args.batch % world:
        fail(f"--batch {args.batch} is not a multiple of WORLD_SIZE={world}")
    ckpt_dir = env.get("GRIDRUN_CKPT_DIR") or args.ckpt_dir or "ckpt"
    if rank == 0:
        os.makedirs(ckpt_dir, exist_ok=True)
    ckpt_path = os.path.join(ckpt_dir, "ckpt.pt")

    # The preemption notice only sets a flag; the training loop acts on it at
    # the next step boundary.  SA_RESTART, so that it interrupts no I/O.
    preempted = [False]

    def on_signal(signum, frame):
        preempted[0] = True
    for sig in {preempt_signal(), signal.SIGTERM}:
        signal.signal(sig, on_signal)
        signal.siginterrupt(sig, False)

    # Reproducible arithmetic: one seed, deterministic kernels, a fixed
    # number of threads, double precision (as mlp-digits.c).
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, threads))
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:
        pass
    torch.set_default_dtype(torch.float64)

    # The split of mlp-digits.c: a fixed permutation, the last 20% for test.
    x, y = load_digits(args.data)
    perm = shuffled(range(len(x)), args.seed ^ 0xD1617)
    ntest = len(x) // 5
    train, test = torch.tensor(perm[:-ntest]), torch.tensor(perm[-ntest:])
    batch = min(args.batch, len(train) // world * world)
    per_epoch = len(train) // batch
    per_rank = batch // world

    model = nn.Sequential(nn.Linear(NFEAT, args.hidden), nn.ReLU(), nn.Linear(args.hidden, NCLASS))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    # Resume: every rank reads the same checkpoint.
    step = 0
    if os.path.exists(ckpt_path):
        try:
            ck = torch.load(ckpt_path, map_location="cpu")
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng"])
            step = int(ck["step"])
            saved = (ck["world_size"], ck["seed"], ck["batch"])
        except Exception as e:
            fail(f"cannot resume from '{ckpt_path}' (another model? use another --ckpt-dir): {e}")
        if rank == 0 and saved != (world, args.seed, batch):
            print(f"train_ddp: warning: '{ckpt_path}' was saved with world size, seed and batch "
                  f"{saved}, not {(world, args.seed, batch)}: the result will differ from an "
                  f"uninterrupted run", file=sys.stderr, flush=True)

    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    # DDP broadcasts rank 0's parameters, and sums the gradients (averaged
    # over the ranks) during backward().
    ddp = DDP(model)
    agreed = torch.tensor([step, -step])
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    if agreed[0] != -agreed[1]:
        fail(f"the ranks resumed from different steps: '{ckpt_path}' changed while they started")
    if rank == 0:
        print(f"resumed from step {step} (restart {restart})" if step
              else f"starting fresh (restart {restart})", flush=True)

    def save_checkpoint():
        if rank == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": torch.get_rng_state(), "step": step,
                     "world_size": world, "seed": args.seed, "batch": batch}
            write_atomically(ckpt_path, lambda f: torch.save(state, f))
        dist.barrier()  # nobody goes on before the checkpoint is complete

    # The epoch order is a function of (seed, epoch), the batch one of
    # (seed, step): the same whether or not the run was interrupted.
    order, order_epoch = None, -1
    flag = torch.zeros(1)
    while step < args.steps:
        epoch, pos = divmod(step, per_epoch)
        if epoch != order_epoch:
            order = torch.tensor(shuffled(train.tolist(), args.seed * 0x100000001B3 + epoch))
            order_epoch = epoch
        mine = order[pos * batch + rank * per_rank: pos * batch + (rank + 1) * per_rank]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(ddp(x[mine]), y[mine])
        loss.backward()
        optimizer.step()
        step += 1
        if args.sleep:
            time.sleep(args.sleep)
        if step == args.fail_once_at and restart == 0 and rank == 1:
            os._exit(3)  # testing: a crash between checkpoints, nothing saved
        # Each rank gets the notice at its own moment: agree at the boundary.
        flag.fill_(1.0 if preempted[0] else 0.0)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = flag.item() > 0 and step < args.steps
        if step % args.ckpt_every == 0 or step == args.steps or stop:
            save_checkpoint()
        if stop:
            if rank == 0:
                print(f"preempted at step {step}: checkpoint saved", flush=True)
            dist.destroy_process_group()
            return 0

    if rank == 0:
        with torch.no_grad():
            final_loss = F.cross_entropy(model(x[train]), y[train]).item()
            acc = (model(x[test]).argmax(1) == y[test]).double().mean().item()
        line = f"final_loss={float(final_loss).hex()} test_acc={acc:.4f} steps={step}"
        print(line, flush=True)
        write_atomically(os.path.join(ckpt_dir, "final.txt"), lambda f: f.write((line + "\n").encode()))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
