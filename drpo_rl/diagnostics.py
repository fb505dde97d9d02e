"""The phantom-gradient monitor: how much of an update is repulsion (docs/method.md, "The
curse of repulsion").

For a weighted log-likelihood loss ``-mean(w * log pi(a|s))`` the gradient splits exactly
into the part from samples with ``w < 0`` (which push the policy away from their logged
action) and the part from samples with ``w > 0`` (which pull it toward theirs). The
monitor measures both parts, per distribution parameter (for a Gaussian: the mean branch
``loc`` and the log-std branch ``log(scale)``; for a categorical: ``logits``) and over the
actor's parameters, together with how far the policy mean sits from the logged actions.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from drpo_rl.objectives.weighted import WeightedLogLikelihoodLoss

__all__ = ["PhantomGradientMonitor"]

_KNOWN_PARAM_KEYS = ("loc", "scale", "logits", "probs")


def _name(key) -> str:
    return key if isinstance(key, str) else "_".join(key)


class PhantomGradientMonitor:
    """Gradient norms from negative- vs positive-weight samples, one batch at a time.

    Call it on the batch of each training step (it never updates the loss's state, e.g.
    DRPO's kappa, and leaves no ``.grad`` behind) and log the returned scalars; by default
    they are also kept in :attr:`history`, and :meth:`curves` stacks them over steps.

    Gradients are those of the loss with ``reduction="mean"``: the negative part is
    ``-(1/N) sum_{w_i < 0} w_i log pi(a_i|s_i)`` and the positive part likewise, so
    ``neg + pos`` is the gradient of the full loss.

    Returned entries (0-d tensors):

    - ``frac_negative``, ``frac_positive``: fraction of samples with ``w < 0`` / ``w > 0``;
    - for each distribution parameter of the actor (``loc``, ``scale``, ``logits``...):
      ``grad_<param>_neg`` and ``grad_<param>_pos``, the Frobenius norm of the gradient
      with respect to that output of the actor; ``scale`` is reported on the log-std branch,
      ``grad_log_scale_*`` (gradient times ``scale``, i.e. with respect to ``log sigma``);
    - ``grad_params_neg``, ``grad_params_pos``: the norm over all actor parameters;
    - Gaussian actors: ``mu_action_distance`` (mean Euclidean distance between the policy
      mean and the logged action) and ``scale_mean``; categorical actors:
      ``logged_action_prob`` (mean probability of the logged item).

    Args:
        loss (WeightedLogLikelihoodLoss): any loss built on the shared base (DRPO, APG, ...).
        keep_history (bool): append each result to :attr:`history`. Default ``True``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule, NormalParamExtractor
        >>> from torchrl.modules import ProbabilisticActor, IndependentNormal
        >>> from drpo_rl.objectives import DRPOLoss
        >>> from drpo_rl.diagnostics import PhantomGradientMonitor
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 6), NormalParamExtractor())
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=IndependentNormal)
        >>> monitor = PhantomGradientMonitor(DRPOLoss(actor))
        >>> data = TensorDict({
        ...     "observation": torch.randn(8, 4), "action": torch.randn(8, 3),
        ...     ("next", "reward"): torch.randn(8, 1)}, [8])
        >>> report = monitor(data)
        >>> report["frac_negative"], report["grad_loc_neg"]  # DRPO never repels
        (tensor(0.), tensor(0.))
        >>> bool(report["grad_loc_pos"] > 0)
        True
        >>> monitor.curves().shape
        torch.Size([1])
    """

    def __init__(self, loss: WeightedLogLikelihoodLoss, *, keep_history: bool = True) -> None:
        if not isinstance(loss, WeightedLogLikelihoodLoss):
            raise ValueError(
                "PhantomGradientMonitor needs a WeightedLogLikelihoodLoss (DRPOLoss or a "
                f"baseline built on it), got {type(loss).__name__}."
            )
        self.loss = loss
        self.keep_history = keep_history
        self.history: list[TensorDict] = []

    def _param_keys(self, work: TensorDictBase) -> list:
        keys = getattr(self.loss.actor_network, "dist_params_keys", None) or _KNOWN_PARAM_KEYS
        return [k for k in keys if isinstance(work.get(k, default=None), torch.Tensor)]

    def __call__(self, tensordict: TensorDictBase) -> TensorDict:
        """Measure one batch; see the class docstring for the entries."""
        loss = self.loss
        _, batch_shape, weights, _ = loss._score_and_weights(tensordict)
        with torch.enable_grad():
            dist, work = loss._distribution(tensordict)
            action = tensordict.get(loss.tensor_keys.action)
            log_prob = loss._log_prob(dist, action, batch_shape).reshape(-1)
            n = log_prob.numel()
            negative = weights < 0
            positive = weights > 0
            zero = torch.zeros_like(weights)
            parts = {
                "neg": -(torch.where(negative, weights, zero) * log_prob).sum() / n,
                "pos": -(torch.where(positive, weights, zero) * log_prob).sum() / n,
            }
            param_keys = self._param_keys(work)
            dist_params = [work.get(k) for k in param_keys]
            actor_params = [
                p for p in loss.actor_network_params.values(True, True) if p.requires_grad
            ]
            targets = dist_params + actor_params
            report: dict[str, torch.Tensor] = {
                "frac_negative": negative.float().mean(),
                "frac_positive": positive.float().mean(),
            }
            for sign, part in parts.items():
                grads = torch.autograd.grad(part, targets, retain_graph=True, allow_unused=True)
                for key, value, grad in zip(param_keys, dist_params, grads, strict=False):
                    grad = torch.zeros_like(value) if grad is None else grad
                    name = _name(key)
                    if name == "scale":
                        # d/d log sigma = sigma * d/d sigma: the log-std branch of the paper.
                        grad, name = grad * value, "log_scale"
                    report[f"grad_{name}_{sign}"] = grad.norm()
                param_grads = [g for g in grads[len(dist_params) :] if g is not None]
                report[f"grad_params_{sign}"] = (
                    torch.stack([g.square().sum() for g in param_grads]).sum().sqrt()
                    if param_grads
                    else torch.zeros(())
                )
        with torch.no_grad():
            if "loc" in param_keys:
                loc = work.get("loc")
                report["mu_action_distance"] = (action.reshape(loc.shape) - loc).norm(dim=-1).mean()
            if "scale" in param_keys:
                report["scale_mean"] = work.get("scale").mean()
            if "logits" in param_keys or "probs" in param_keys:
                report["logged_action_prob"] = log_prob.exp().mean()
        result = TensorDict({k: v.detach() for k, v in report.items()})
        if self.keep_history:
            self.history.append(result)
        return result

    def curves(self) -> TensorDict:
        """The recorded reports stacked over calls: a TensorDict of shape ``[steps]``."""
        if not self.history:
            raise ValueError("no report recorded yet: call the monitor on a batch first.")
        return torch.stack(self.history)
