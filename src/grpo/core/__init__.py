"""Pure tensor math shared by every trainer: advantages, losses, KL, masked reductions.

Nothing here imports gymnasium or transformers.
"""

from grpo.core.advantages import (
    OUTCOME_ESTIMATORS,
    REWARD_SCALES,
    discounted_returns,
    gae,
    group_advantages,
    leave_one_out_advantages,
    process_advantages,
    timestep_group_advantages,
)
from grpo.core.kl import (
    KL_ESTIMATORS,
    categorical_entropy,
    gaussian_entropy,
    gaussian_log_prob,
    kl_estimate,
)
from grpo.core.losses import (
    AGGREGATIONS,
    RATIO_LEVELS,
    aggregate,
    clipped_surrogate,
    explained_variance,
    grpo_loss,
    value_loss,
)
from grpo.core.masked import masked_mean, masked_sum, masked_whiten
from grpo.core.registry import Registry

__all__ = [
    "AGGREGATIONS", "KL_ESTIMATORS", "OUTCOME_ESTIMATORS", "RATIO_LEVELS", "REWARD_SCALES", "Registry",
    "aggregate", "categorical_entropy", "clipped_surrogate", "discounted_returns", "explained_variance", "gae",
    "gaussian_entropy", "gaussian_log_prob", "group_advantages", "grpo_loss", "kl_estimate",
    "leave_one_out_advantages", "masked_mean", "masked_sum", "masked_whiten", "process_advantages",
    "timestep_group_advantages", "value_loss",
]
