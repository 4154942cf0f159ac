"""The examples in the LLM modules' docstrings (reward functions, masks, pass@k) run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["grpo.llm.rewards.answer", "grpo.llm.rewards.fmt", "grpo.llm.rewards.length", "grpo.llm.rewards.process",
           "grpo.llm.rewards.execution", "grpo.llm.rewards.code_tests",
           "grpo.llm.rewards.base", "grpo.llm.generation", "grpo.llm.evaluation", "grpo.llm.schedules",
           "grpo.llm.rewards.plugins", "grpo.llm.sample"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
