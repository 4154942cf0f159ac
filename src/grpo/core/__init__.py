"""Pure tensor math shared by every trainer: advantages, losses, KL, masked reductions.

Nothing here imports gymnasium or transformers. The algorithm menu (docs/algorithms.md) is a set
of registries: OUTCOME_ESTIMATORS, POLICY_LOSSES, AGGREGATIONS, TOKEN_SELECTIONS,
ROLLOUT_CORRECTIONS, KL_ESTIMATORS, RATIO_LEVELS.
"""

from grpo.core.advantages import (
    REWARD_SCALES,
    ZERO_STD,
    discounted_returns,
    gae,
    group_advantages,
    process_advantages,
    timestep_group_advantages,
)
from grpo.core.estimators import OUTCOME_ESTIMATORS, AdvantageInputs, needs_baseline, outcome_advantages
from grpo.core.kl import (
    EXACT_KL,
    KL_ESTIMATORS,
    KL_NAMES,
    MAX_LOG_RATIO,
    categorical_entropy,
    categorical_kl,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    kl_estimate,
)
from grpo.core.losses import (
    AGGREGATIONS,
    MICRO_BATCH_SHARES,
    aggregate,
    explained_variance,
    grpo_loss,
    value_loss,
)
from grpo.core.masked import masked_mean, masked_sum, masked_whiten
from grpo.core.policy_losses import POLICY_LOSSES, RATIO_LEVELS, PolicyLossParams, clipped_surrogate, parse_loss_args
from grpo.core.registry import Registry
from grpo.core.rollout_correction import ROLLOUT_CORRECTIONS, off_policy_sequence_mask, rollout_weights
from grpo.core.token_selection import TOKEN_SELECTIONS, needs_entropy, select_tokens

__all__ = [
    "AGGREGATIONS", "EXACT_KL", "KL_ESTIMATORS", "KL_NAMES", "MAX_LOG_RATIO", "MICRO_BATCH_SHARES", "OUTCOME_ESTIMATORS", "POLICY_LOSSES",
    "RATIO_LEVELS", "REWARD_SCALES", "ROLLOUT_CORRECTIONS", "TOKEN_SELECTIONS", "AdvantageInputs", "PolicyLossParams",
    "Registry", "ZERO_STD",
    "aggregate", "categorical_entropy", "categorical_kl", "clipped_surrogate", "discounted_returns", "explained_variance", "gae",
    "gaussian_entropy", "gaussian_kl", "gaussian_log_prob", "group_advantages", "grpo_loss", "kl_estimate",
    "masked_mean", "masked_sum", "masked_whiten", "needs_baseline", "needs_entropy", "off_policy_sequence_mask",
    "outcome_advantages", "parse_loss_args",
    "process_advantages", "rollout_weights", "select_tokens", "timestep_group_advantages", "value_loss",
]
