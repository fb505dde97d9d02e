"""What the command line prints: TorchRL's chatter that tells a user nothing is silenced,
each line by its message, so that real warnings and logs still come through.

Example:
    >>> import logging
    >>> quiet_torchrl()
    >>> log = logging.getLogger("torchrl")
    >>> quiet_torchrl()  # idempotent
    >>> log.filters.count(EXPECTED_TORCHRL_LOGS)
    1
    >>> EXPECTED_TORCHRL_LOGS.filter(logging.makeLogRecord(
    ...     {"msg": "Initialized LazyMemmapStorage with torch.Size([10]) shape"}))
    False
"""

import logging
import warnings

#: The start of TorchRL's expected messages: one INFO line per storage allocated.
EXPECTED_LOG_PREFIXES = ("Initialized LazyTensorStorage with", "Initialized LazyMemmapStorage with")

#: TorchRL 0.14's BCLoss does not annotate this attribute, so every construction warns.
EXPECTED_WARNING = "The name target_actor_network_params wasn't part of the annotations"


class _ExpectedLogs(logging.Filter):
    """Drops TorchRL's log records that start with one of `EXPECTED_LOG_PREFIXES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(EXPECTED_LOG_PREFIXES)


EXPECTED_TORCHRL_LOGS = _ExpectedLogs()


def quiet_torchrl() -> None:
    """Silence TorchRL's INFO line of every storage allocated, and the warning its own
    BCLoss class raises on every construction; anything else still reaches the user.
    Idempotent."""
    log = logging.getLogger("torchrl")
    if EXPECTED_TORCHRL_LOGS not in log.filters:
        log.addFilter(EXPECTED_TORCHRL_LOGS)
    warnings.filterwarnings("ignore", message=EXPECTED_WARNING, category=UserWarning)
