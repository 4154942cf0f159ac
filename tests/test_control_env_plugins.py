"""A user's own environment from the command line: gymnasium's ``module:EnvId`` in train, eval, compare."""

from __future__ import annotations

import pytest

from grpo.cli import main
from grpo.utils.io import read_json

# Reward 1 per step for action 1 until the walker reaches +5; action 0 steps back and is not rewarded.
ENV_MODULE = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Walk(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, render_mode=None):
        self.observation_space = spaces.Box(-10.0, 10.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.x = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 1 if action == 1 else -1
        return np.array([self.x], np.float32), float(action == 1), self.x >= 5, False, {}


gym.register("Walk-v0", entry_point=Walk, max_episode_steps=12, reward_threshold=5.0)
'''

FAST = ["--total-steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--group-size", "2", "--groups", "2",
        "--minibatches", "1", "--progress", "false"]


@pytest.fixture()
def walk_module(tmp_path, monkeypatch):
    (tmp_path / "my_walk_envs.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_walk_envs:Walk-v0"


def test_train_and_eval_a_module_env(walk_module, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--env", walk_module, "--out", str(out), *FAST]) == 0
    summary = read_json(out / "summary.json")
    assert summary["env"] == walk_module and summary["reward_threshold"] == 5.0
    assert read_json(out / "config.json")["env_info"]["max_episode_steps"] == 12
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"{walk_module}: mean return")


@pytest.mark.slow  # a fork server and a process per run: about 10 s on a busy 2-core machine
def test_compare_a_module_env(walk_module, tmp_path):
    from grpo.experiments.compare import compare, plan

    specs = plan([walk_module], ["grpo"], [0], 200, overrides={"grpo": {"group_size": 2, "groups": 2, "minibatches": 1}},
                 eval_every=100)
    result = compare(specs, tmp_path / "cmp", jobs=1, progress=False)  # the run imports the module in its own process
    assert [r["env"] for r in result["rows"]] == [walk_module]
    assert result["runs"][0]["env_steps"] >= 200


def test_bad_module_env_is_one_line(walk_module, tmp_path, capsys):
    for env, message in (("no_such_module_xyz:Walk-v0", "no module named 'no_such_module_xyz'"),
                         ("my_walk_envs:Run-v0", "unknown gymnasium environment id 'Run-v0'"),
                         ("my_walk_envs:", "expected MODULE:NAME")):
        assert main(["train", "--env", env, "--out", str(tmp_path / "x"), *FAST]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists()


def test_docstring_examples():
    import doctest

    from grpo.control import video
    from grpo.utils import imports

    for module in (imports, video):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
