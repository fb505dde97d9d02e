"""Beyond one machine, on existing engines: a data-parallel learner (``torch.distributed``,
DDP, launched by ``torchrun``), evaluation over TorchRL's distributed collectors, sharded
log generation and benchmark grids on Ray. The one-process path needs none of it.
"""
