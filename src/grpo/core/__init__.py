"""Pure tensor math shared by every trainer: advantages, losses, KL, masked reductions.

Nothing here imports gymnasium or transformers.
"""

from grpo.core.advantages import (
    OUTCOME_ESTIMATORS,
    REWARD_SCALES,
    ZERO_STD,
    discounted_returns,
    gae,
    group_advantages,
    process_advantages,
    timestep_group_advantages,
)
from grpo.core.kl import (
    KL_ESTIMATORS,
    MAX_LOG_RATIO,
    categorical_entropy,
    gaussian_entropy,
    gaussian_log_prob,
    kl_estimate,
)
from grpo.core.losses import (
    AGGREGATIONS,
    MICRO_BATCH_SHARES,
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
    "AGGREGATIONS", "KL_ESTIMATORS", "MAX_LOG_RATIO", "MICRO_BATCH_SHARES", "OUTCOME_ESTIMATORS", "RATIO_LEVELS",
    "REWARD_SCALES", "Registry", "ZERO_STD",
    "aggregate", "categorical_entropy", "clipped_surrogate", "discounted_returns", "explained_variance", "gae",
    "gaussian_entropy", "gaussian_log_prob", "group_advantages", "grpo_loss", "kl_estimate",
    "masked_mean", "masked_sum", "masked_whiten", "process_advantages",
    "timestep_group_advantages", "value_loss",
]
