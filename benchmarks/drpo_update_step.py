"""Time of one update step (forward + backward + Adam) with DRPOLoss vs TorchRL's BCLoss.

Same actor (the paper's Gaussian policy: MLP 2 x 128, ReLU, over a 16-d item embedding;
`drpo_rl.models.make_gaussian_actor`), same batch, same optimizer; only the loss differs.
Three losses are timed in one process, at each batch size:
- `BCLoss`: TorchRL's behaviour cloning (the reference the ratio is taken against);
- `NLL`: the bare minimum of a log-likelihood step, `-actor.get_dist(td).log_prob(a).mean()`
  written by hand (shows what the loss-module machinery costs);
- `DRPOLoss`: DRPO with its default adaptive kappa (the top-fraction filter, weights,
  effective sample size, and the in-place kappa update `loss.update(out)` after the
  optimiser step, included).
Target: DRPO / BC <= 1.15 on CPU, and on the GPU with `--compile`.
`--count-ops` also prints the aten operations one forward + backward of each loss
dispatches (views excluded; the optimiser's are the same for all): on a GPU, at these
sizes, each is a kernel launch and the step is bound by launches, so the count shows the
eager GPU overhead on any machine.
Note that TorchRL's BCLoss runs the actor twice per step on a ProbabilisticActor (once as a
policy, once in `get_dist`), so it is not the cheapest possible reference; the NLL column
is.

    python benchmarks/drpo_update_step.py                        # CPU, batch 320 and 32768
    python benchmarks/drpo_update_step.py --threads 1 --cpu-time # on a busy shared CPU
    python benchmarks/drpo_update_step.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from tensordict import TensorDict
from torch.utils._python_dispatch import TorchDispatchMode
from torchrl.objectives import BCLoss

from drpo_rl.models import PolicySpecs, make_gaussian_actor
from drpo_rl.objectives import DRPOLoss

OBS_DIM = ACTION_DIM = 16


class HandNLL(torch.nn.Module):
    """The reference floor: negative log-likelihood of the logged action, nothing else."""

    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, data):
        log_prob = self.actor.get_dist(data.copy()).log_prob(data["action"])
        return TensorDict({"loss_nll": -log_prob.mean()})


def make_batch(n: int, device: torch.device) -> TensorDict:
    g = torch.Generator().manual_seed(n)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS_DIM, generator=g),
            "action": torch.randn(n, ACTION_DIM, generator=g),
            ("next", "reward"): torch.rand(n, 1, generator=g),
        },
        [n],
    ).to(device)


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside it, views (no kernel) excluded."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        returns = func._schema.returns
        alias = returns[0].alias_info if returns else None
        self.count += not (alias is not None and not alias.is_write)
        return func(*args, **(kwargs or {}))


def loss_ops(step) -> int:
    """Ops of one forward and backward of the step's loss."""
    with OpCounter() as counter:
        step.loss_and_grad()
    return counter.count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(name, batch, device, compile_):
    """One update step of `name` on `batch`, warmed up (and compiled) before it is returned."""
    torch.manual_seed(0)
    actor = make_gaussian_actor(PolicySpecs(obs_dim=OBS_DIM, action_dim=ACTION_DIM)).to(device)
    if name == "BCLoss":
        with warnings.catch_warnings():
            # torchrl's BCLoss trips its own annotation check; not ours to silence upstream.
            warnings.simplefilter("ignore", UserWarning)
            loss_module = BCLoss(actor)
        key = "loss_bc"
    elif name == "NLL":
        loss_module, key = HandNLL(actor), "loss_nll"
    else:
        loss_module, key = DRPOLoss(actor).to(device), "loss_objective"
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=3e-4)
    forward = loss_module
    if compile_:
        # DRPOLoss compiles as one graph; the references may need graph breaks.
        forward = torch.compile(loss_module, fullgraph=(name == "DRPOLoss"))
    # DRPO's adaptive kappa is updated outside the loss's forward, after the optimiser step.
    update = getattr(loss_module, "update", None)

    def loss_and_grad():
        out = forward(batch)
        out[key].backward()
        return out

    def step():
        out = loss_and_grad()
        optimizer.step()
        optimizer.zero_grad()
        if update is not None:
            update(out)

    for _ in range(5):
        step()
    _sync(device)
    # The optimiser's part is the same for every loss: the ops count is of the loss's part.
    step.loss_and_grad = loss_and_grad
    return step


def time_round(step, device, calls, clock):
    _sync(device)
    start = clock()
    for _ in range(calls):
        step()
    _sync(device)
    return (clock() - start) / calls


def measure(steps, device, seconds, repeats, clock):
    """Median seconds per step; the losses take turns round by round so that a change in
    machine load hits all of them alike."""
    calls = {}
    for name, step in steps.items():
        per_step = time_round(step, device, 3, time.perf_counter)
        calls[name] = max(3, int(seconds / repeats / max(per_step, 1e-6)))
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            samples[name].append(time_round(step, device, calls[name], clock))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[320, 32768])
    parser.add_argument("--compile", action="store_true", help="torch.compile the losses")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per loss and size")
    parser.add_argument("--repeats", type=int, default=9, help="median over this many rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of wall time (steadier on a shared "
        "CPU machine; counts all threads)",
    )
    parser.add_argument(
        "--count-ops",
        action="store_true",
        help="also count the aten ops one eager step dispatches (launches on a GPU)",
    )
    args = parser.parse_args()
    if args.count_ops and args.compile:
        parser.error("--count-ops counts eager steps; drop --compile")
    warnings.filterwarnings("ignore", category=FutureWarning, module="tensordict")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.cpu_time and device.type != "cpu":
        parser.error("--cpu-time only measures CPU work; use wall time on an accelerator")
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(
        f"device={device} compile={args.compile} torch threads={torch.get_num_threads()} "
        f"clock={'process CPU' if args.cpu_time else 'wall'} torch {torch.__version__}"
    )
    header = ("batch", "BCLoss ms", "NLL ms", "DRPO ms", "DRPO/BC", "DRPO/NLL")
    print(" ".join(f"{h:>10}" for h in header))
    for n in args.batch_sizes:
        batch = make_batch(n, device)
        steps = {
            name: make_step(name, batch, device, args.compile)
            for name in ("BCLoss", "NLL", "DRPOLoss")
        }
        t = measure(steps, device, args.seconds, args.repeats, clock)
        row = (t["BCLoss"] * 1e3, t["NLL"] * 1e3, t["DRPOLoss"] * 1e3)
        ratios = (t["DRPOLoss"] / t["BCLoss"], t["DRPOLoss"] / t["NLL"])
        print(f"{n:>10} " + " ".join(f"{v:>10.3f}" for v in row + ratios))
        if args.count_ops:
            ops = {name: loss_ops(step) for name, step in steps.items()}
            print(
                f"{'':>10} loss ops: BCLoss {ops['BCLoss']}, NLL {ops['NLL']}, DRPO "
                f"{ops['DRPOLoss']} (DRPO/BC {ops['DRPOLoss'] / ops['BCLoss']:.2f}, "
                f"DRPO/NLL {ops['DRPOLoss'] / ops['NLL']:.2f})"
            )


if __name__ == "__main__":
    main()
