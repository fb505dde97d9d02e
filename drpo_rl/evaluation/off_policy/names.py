"""The estimators' names, and defaults the command line shares (importing no torch).

Example:
    >>> "dr" in BANDIT_ESTIMATORS and "dr" in SESSION_ESTIMATORS
    True
"""

#: Estimators of horizon-1 logs and of session logs (the defaults of each).
BANDIT_ESTIMATORS = ("dm", "ips", "snips", "dr", "sndr", "switch-dr", "clipped-ips")
SESSION_ESTIMATORS = ("dm", "pdis", "wpdis", "dr")
ESTIMATORS = tuple(dict.fromkeys(BANDIT_ESTIMATORS + SESSION_ESTIMATORS))
#: Those that need a reward model (for sessions, the policy's fitted Q).
MODEL_BASED = ("dm", "dr", "sndr", "switch-dr")
#: The default clip of clipped-ips and switch-dr: a weight above 100 (the policy favours the
#: logged item 100 times more than the behaviour did) is where a handful of rows start to
#: dominate logs of 10^4 rows; the share of rows above it is in the diagnostics.
DEFAULT_CLIP = 100.0
#: The estimator of ``drpo-rl bench --ope``: it works on bandit and session logs alike (for
#: sessions it is the per-decision DR with fitted Q).
BENCH_ESTIMATOR = "dr"
