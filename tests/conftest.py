"""Shared pytest set-up."""

import torch

# CI has two cores; one intra-op thread per test process keeps timings stable and avoids
# oversubscription when several processes run.
torch.set_num_threads(1)
