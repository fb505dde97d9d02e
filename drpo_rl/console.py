"""What the command line prints: TorchRL's chatter that tells a user nothing is silenced.

Example:
    >>> import logging
    >>> quiet_torchrl()
    >>> logging.getLogger("torchrl").level == logging.WARNING
    True
"""

import logging
import warnings


def quiet_torchrl() -> None:
    """Silence TorchRL's INFO log of every storage allocated, and the warning its own
    BCLoss class raises on every construction (a missing class annotation in torchrl 0.14)."""
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore",
        message="The name target_actor_network_params wasn't part of the annotations",
        category=UserWarning,
    )
