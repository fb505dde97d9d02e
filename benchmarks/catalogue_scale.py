"""Catalogue scale: user-steps/s, build time and peak memory as the catalogue grows (not a test).

For each env kind (item id: `RecSimBanditDiscrete`; embedding action decoded to the
nearest item: `RecSimBandit`), each catalogue size `--items` and each batch `--users`, a
fresh child process builds the env (timed), steps it with TorchRL's
`step_and_maybe_reset` (as a collector does), and steps, in the same process, a bare
TorchRL `EnvBase` written here with the same maths and nothing else: users drawn from the
mixture, the shown item's reward, and for embeddings an exact chunked decode (one
`torch.mm` per chunk of items and a running argmax, the same chunk size as the env's).
The ratio ours / bare is the figure to read (these machines are shared and noisy);
absolute rates only mean something on an idle machine or a GPU.

Memory: each child reports its peak resident memory (VmHWM) after building and after
stepping, and the difference to a child that only imports (the baseline); the catalogue
itself holds items x d x 4 bytes twice (embeddings and their unit-length copy) plus
popularity and cluster ids. Nothing of size users x items is ever built.

    python benchmarks/catalogue_scale.py              # 100 ... 1M items, 4096 and 65536 users
    python benchmarks/catalogue_scale.py --items 100 100000 --users 4096 --seconds 2
    python benchmarks/catalogue_scale.py --device cuda --users 1048576 --items 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

KINDS = {"item": "RecSimBanditDiscrete", "embedding": "RecSimBandit"}


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def _bare_env_class():
    """A TorchRL EnvBase with the suite's bandit maths and nothing else (the reference)."""
    import torch
    from tensordict import TensorDict
    from torchrl.data import Bounded, Categorical, Composite, Unbounded
    from torchrl.envs import EnvBase

    class BareBandit(EnvBase):
        def __init__(self, catalogue, config, num_envs, device, chunk_size, action_type):
            super().__init__(device=device, batch_size=torch.Size([num_envs]))
            self.unit = catalogue.unit_embeddings
            self.centres, self.cdf = catalogue.centres, catalogue.mixture_weights.cumsum(0)
            self.config, self.chunk, self.embedding = config, chunk_size, action_type != "item"
            b, n, d = num_envs, self.unit.shape[0], self.unit.shape[1]
            self.gen = torch.Generator(device=device).manual_seed(0)
            if self.embedding:
                self.action_spec = Unbounded(shape=(b, d), device=device)
            else:
                self.action_spec = Categorical(n, shape=(b,), dtype=torch.int64, device=device)
            self.observation_spec = Composite(
                observation=Unbounded(shape=(b, d), device=device), shape=(b,), device=device
            )
            self.reward_spec = Bounded(0.0, 1.0, shape=(b, 1), device=device)

        def _reset(self, tensordict=None, **kwargs):
            b, d, c = self.batch_size[0], self.unit.shape[1], self.config
            u = torch.rand(b, generator=self.gen, device=self.device)
            row = torch.searchsorted(self.cdf, u * self.cdf[-1], right=True).clamp_(
                max=self.cdf.shape[0] - 1
            )
            noise = torch.randn(b, d, generator=self.gen, device=self.device)
            self.pref = torch.nn.functional.normalize(
                self.centres[row] + c.user_spread * noise, dim=-1
            )
            offset = c.observation_noise * torch.randn(b, d, generator=self.gen, device=self.device)
            done = torch.zeros(b, 1, dtype=torch.bool, device=self.device)
            return TensorDict(
                {"observation": self.pref + offset, "done": done, "terminated": done.clone()},
                batch_size=self.batch_size,
            )

        def _step(self, tensordict):
            action = tensordict["action"]
            if self.embedding:
                best_value = best_item = None
                for start in range(0, self.unit.shape[0], self.chunk):
                    value, index = torch.mm(action, self.unit[start : start + self.chunk].T).max(-1)
                    if best_value is None:
                        best_value, best_item = value, index
                    else:
                        better = value > best_value
                        best_value = torch.where(better, value, best_value)
                        best_item = torch.where(better, index + start, best_item)
                item = best_item
            else:
                item = action
            cos = (self.unit[item] * self.pref).sum(-1)
            latent = torch.exp((cos - 1.0) / (2.0 * self.config.delta**2))
            noise = torch.randn(latent.shape, generator=self.gen, device=self.device)
            reward = (latent + self.config.reward_noise * noise).clamp(0.0, 1.0)
            done = torch.ones(self.batch_size[0], 1, dtype=torch.bool, device=self.device)
            return TensorDict(
                {
                    "observation": torch.zeros_like(self.pref),
                    "reward": reward.unsqueeze(-1),
                    "done": done,
                    "terminated": done.clone(),
                },
                batch_size=self.batch_size,
            )

        def _set_seed(self, seed):
            self.gen.manual_seed(seed or 0)

    return BareBandit


def _rate(env, action, seconds: float, sync) -> float:
    """User-steps/s of `step_and_maybe_reset` with a fixed action, after one warm-up step."""
    td = env.reset()
    steps, elapsed = 0, 0.0
    td["action"] = action
    _, td = env.step_and_maybe_reset(td)
    sync()
    start = time.perf_counter()
    while elapsed < seconds or steps == 0:
        td["action"] = action
        _, td = env.step_and_maybe_reset(td)
        steps += 1
        sync()
        elapsed = time.perf_counter() - start
    return env.batch_size[0] * steps / elapsed


def run_cell(kind: str, num_items: int, num_users: int, device: str, seconds: float) -> dict:
    import torch

    import envs

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    before = _peak_rss_mib()
    start = time.perf_counter()
    env = envs.make_env(KINDS[kind], num_envs=num_users, device=device, seed=0, num_items=num_items)
    sync()
    build = time.perf_counter() - start
    built = _peak_rss_mib()
    gen = torch.Generator(device=device).manual_seed(0)
    if kind == "item":
        action = torch.randint(num_items, (num_users,), generator=gen, device=device)
    else:
        action = torch.randn(num_users, env.config.embedding_dim, generator=gen, device=device)
    ours = _rate(env, action, seconds, sync)
    bare = _bare_env_class()(
        env.catalogue, env.config, num_users, torch.device(device), env.chunk_size, kind
    )
    reference = _rate(bare, action, seconds, sync)
    cat = env.catalogue
    catalogue_bytes = sum(
        t.numel() * t.element_size()
        for t in (cat.embeddings, cat.unit_embeddings, cat.popularity, cat.cluster)
    )
    return {
        "kind": kind,
        "items": num_items,
        "users": num_users,
        "chunk": env.chunk_size,
        "build_s": build,
        "ours": ours,
        "bare": reference,
        "ratio": ours / reference,
        "rss_before_mib": before,
        "rss_built_mib": built,
        "rss_peak_mib": _peak_rss_mib(),
        "catalogue_mib": catalogue_bytes / 2**20,
    }


def _child(cell: list[str], seconds: float) -> dict:
    command = [sys.executable, __file__, "--seconds", str(seconds), "--cell", *cell]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100, 1000, 10**4, 10**5, 10**6])
    parser.add_argument("--users", type=int, nargs="+", default=[4096, 65536])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--cell", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        kind, items, users, device = args.cell
        print(json.dumps(run_cell(kind, int(items), int(users), device, args.seconds)))
        return
    baseline = _child(["item", "100", "1", args.device], 0.0)["rss_peak_mib"]
    print(
        f"device={args.device} seconds={args.seconds}; baseline child peak RSS {baseline:.0f} MiB"
    )
    header = (
        f"{'action':>9} {'items':>9} {'users':>7} {'build s':>8} {'ours u-steps/s':>15} "
        f"{'bare u-steps/s':>15} {'ours/bare':>9} {'peak MiB':>9} {'+base MiB':>9} {'cat MiB':>8}"
    )
    print(header)
    for kind in args.kinds:
        for users in args.users:
            for items in args.items:
                cell = _child([kind, str(items), str(users), args.device], args.seconds)
                print(
                    f"{kind:>9} {items:>9,} {users:>7,} {cell['build_s']:>8.2f} "
                    f"{cell['ours']:>15,.0f} {cell['bare']:>15,.0f} {cell['ratio']:>9.2f} "
                    f"{cell['rss_peak_mib']:>9.0f} {cell['rss_peak_mib'] - baseline:>9.0f} "
                    f"{cell['catalogue_mib']:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
