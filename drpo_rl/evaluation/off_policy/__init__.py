"""Off-policy evaluation (OPE): a policy's value estimated from logged interactions alone.

:func:`~drpo_rl.evaluation.off_policy_evaluate` scores a policy on logs with exact behaviour
propensities, with the direct method, importance sampling and doubly robust estimators
(horizon 1: DM, IPS, SNIPS, DR, SNDR, Switch-DR, clipped IPS; sessions: DM and DR through
fitted Q evaluation, PDIS, weighted PDIS), each with a bootstrap or Student-t interval and
weight diagnostics. See ``docs/method.md`` (off-policy evaluation) for the definitions and
assumptions.

The public names are exported by :mod:`drpo_rl.evaluation` (loaded on first use); this
package itself imports nothing, so that the command line reads :mod:`.names` without torch.
"""
