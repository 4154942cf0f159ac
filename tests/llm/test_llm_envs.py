"""The built-in text environments and how ``--env`` finds an environment (issue 14)."""

from __future__ import annotations

import pytest

from grpo.llm.envs.base import env_factory
from grpo.llm.envs.calculator import CalculatorEnv, calculator


def test_calculator_problems_never_have_a_negative_answer():
    answers = [CalculatorEnv().reset(seed=s)[1]["answer"] for s in range(2000)]
    assert min(answers) >= 0 and len(set(answers)) > 300


def test_calculator_env_is_seeded_and_scores_the_last_number():
    env = CalculatorEnv()
    first, info = env.reset(seed=5)
    assert CalculatorEnv().reset(seed=5)[0] == first and CalculatorEnv().reset(seed=6)[0] != first
    answer = info["answer"]
    _, reward, terminated, truncated, info = env.step({"role": "assistant", "content": f"So it is {answer:,}."})
    assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, 1.0)
    env.reset(seed=5)
    assert env.step({"role": "assistant", "content": f"{answer + 1}"})[1] == 0.0
    env.reset(seed=5)  # graded as the numeric reward reads a final answer: the marked number, not a later one
    assert env.step({"role": "assistant", "content": f"The answer is {answer}. I used 2 steps."})[1] == 1.0


def test_calculator_tool_is_arithmetic_only():
    assert calculator("(12 + 7) * 3") == "57" and calculator("7 / 2") == "3.5"
    with pytest.raises(ValueError, match="not arithmetic"):
        calculator("__import__('os').system('true')")
    with pytest.raises(ValueError, match="exponent too large"):
        calculator("9 ** 999")


def test_code_function_env_gives_feedback_then_full_reward():
    from grpo.llm.envs.code_function import CodeFunctionEnv

    env = CodeFunctionEnv(attempts=3)
    msgs, _ = env.reset(seed=1)
    assert "reverse(s)" in msgs[-1]["content"]
    new, reward, done, _, info = env.step({"role": "assistant", "content": "```python\ndef reverse(s):\n    return s\n```"})
    assert (reward, done) == (0.0, False) and "expected \"cba\"" in new[0]["content"] and info["passed_frac"] == 1 / 3
    new, reward, done, _, info = env.step({"role": "assistant", "content": "def reverse(s):\n    return s[::-1]"})
    assert (new, reward, done, info["solved"], info["attempts"]) == ([], 1.0, True, 1.0, 2.0)


def test_env_factory_names_classes_and_gymnasium_ids():
    import gymnasium

    name, make = env_factory("calculator")
    assert name == "calculator" and isinstance(make(), CalculatorEnv)
    assert isinstance(env_factory("grpo.llm.envs.calculator:CalculatorEnv")[1](), CalculatorEnv)
    from grpo.llm.envs.base import env_tools

    class GymCalculator(CalculatorEnv, gymnasium.Env):  # gymnasium.make wants a gymnasium.Env
        pass

    gymnasium.register("GrpoTestCalculator-v0", entry_point=GymCalculator, max_episode_steps=3)
    try:
        env = env_factory("GrpoTestCalculator-v0")[1]()
        msgs, _ = env.reset(seed=5)
        assert msgs == CalculatorEnv().reset(seed=5)[0]
        assert env_tools(env) == [calculator]  # found under gymnasium's wrappers
        assert env.step({"role": "assistant", "content": "0"})[2] is True
    finally:
        gymnasium.registry.pop("GrpoTestCalculator-v0")
    with pytest.raises(ValueError, match="not a built-in environment"):
        env_factory("NoSuchEnv-v9")
