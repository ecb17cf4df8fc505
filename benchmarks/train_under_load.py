"""Training beside other work: how a CPU training step slows when another process is busy
on the same cores, for each threading of torch (thread count, OpenMP wait policy).

    python benchmarks/train_under_load.py [--steps 15] [--resolution 32] [--batch 64]

Each case is a fresh process (the OpenMP wait policy is read when torch loads): a
MobileNet-v1 (the 1.0x configuration of the `mobilenet_v1` space) trained with SGD on
random images, 3 warm-up steps, then the median of ``--steps`` steps. "beside a busy
process": one other process spins a CPU core (a Python busy loop) for the whole case.
The cases alternate alone / beside, so that a slow spell of a shared machine does not
fall on one of them only. Printed: the median step of each case and the ratio beside /
alone: a threading under which load slows training in proportion keeps that ratio near
the share of the cores the other process takes (about 2x on 2 cores at most), one that
collapses goes far above it (OpenMP threads that spin waiting for a core the other
process holds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, sys, time
import torch
from aows.catalogue import get_space
from aows.nn import build_network
threads, steps, res, batch = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
space = get_space("mobilenet_v1", resolution=res, classes=10)
net = build_network(space, space.multiplier_config(1.0)).train()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(batch, 3, res, res), torch.randint(0, 10, (batch,))
times = []
for k in range(3 + steps):
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if k >= 3:
        times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"median_ms": 1e3 * times[len(times) // 2]}))
"""

OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
CASES = [  # (label, threads, OpenMP settings; none given: the OpenMP runtime's defaults)
    ("2 threads (torch's default here)", 2, {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, GOMP_SPINCOUNT=10000", 2, {"GOMP_SPINCOUNT": "10000"}),
    ("2 threads, GOMP_SPINCOUNT=1000", 2, {"GOMP_SPINCOUNT": "1000"}),
    ("1 thread", 1, {}),
]


def step_ms(threads: int, policy: dict, args) -> float:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP}
    env.update(policy)
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads), str(args.steps),
                          str(args.resolution), str(args.batch)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])["median_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; MobileNet-v1 1.0x at {args.resolution} px, batch "
          f"{args.batch}; median of {args.steps} steps")
    rows = []
    for label, threads, policy in CASES:
        alone = step_ms(threads, policy, args)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            beside = step_ms(threads, policy, args)
        finally:
            busy.kill()
            busy.wait()
        rows.append((label, alone, beside))
        print(f"  {label:<36} alone {alone:7.0f} ms   beside a busy process {beside:7.0f} ms"
              f"   ratio {beside / alone:5.2f}", flush=True)
    best_alone = min(r[1] for r in rows)
    print("against the fastest alone: " + "; ".join(
        f"{label}: alone {a / best_alone:.2f}x, beside {b / best_alone:.2f}x"
        for label, a, b in rows))


if __name__ == "__main__":
    main()
