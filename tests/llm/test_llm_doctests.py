"""The examples in the LLM modules' docstrings (reward functions, masks, pass@k) run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["grpo.llm.data.rewards.answer", "grpo.llm.data.rewards.fmt", "grpo.llm.data.rewards.length", "grpo.llm.data.rewards.process",
           "grpo.llm.data.rewards.execution", "grpo.llm.data.rewards.code_tests",
           "grpo.llm.data.rewards.base", "grpo.llm.rollout.generation", "grpo.llm.evaluation", "grpo.llm.infra.schedules",
           "grpo.llm.data.rewards.plugins", "grpo.llm.sample", "grpo.llm.envs.base", "grpo.llm.envs.tools",
           "grpo.llm.rollout.seeding", "grpo.llm.data.heldout", "grpo.llm.data.sources",
           "grpo.llm.data.tasks", "grpo.llm.data.word_problems",
           "grpo.llm.modeling.logprobs", "grpo.llm.modeling.hidden", "grpo.llm.rollout.sampler", "grpo.llm.presets"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
