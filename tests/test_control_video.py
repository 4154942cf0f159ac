"""``grpo eval --video`` and ``grpo compare --video``: files read back (frame count, size), and bad input."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pygame")

import imageio.v2 as imageio  # noqa: E402
from PIL import Image  # noqa: E402

from grpo.cli import main  # noqa: E402
from grpo.control.train import RunConfig, algo_config, train  # noqa: E402

ENV_MODULE = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Dark(gym.Env):
    """Plays like CartPole (4 observations, 2 actions), but draws nothing."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode=None):
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 1.0, True, False, {}


gym.register("Dark-v0", entry_point=Dark, max_episode_steps=5)
'''


def _run(tmp_path, env: str, steps: int):
    out = tmp_path / env
    train("grpo", RunConfig(env=env, total_steps=steps, eval_every=0, progress=False),
          algo_config("grpo", env, {"group_size": 2, "groups": 2, "minibatches": 1}), out)
    return out


def _mp4(path):
    reader = imageio.get_reader(path)
    try:
        return reader.count_frames(), reader.get_meta_data()["size"]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """A saved CartPole policy after one tiny iteration (episodes of some tens of steps)."""
    return _run(tmp_path_factory.mktemp("video"), "CartPole-v1", 100)


def test_eval_video_mp4_and_gif_read_back(cartpole, tmp_path, capsys):

    # CartPole: reward 1 per step, so a greedy episode of return R gives R + 1 frames (reset + each step).
    video = tmp_path / "cartpole.mp4"
    assert main(["eval", "--checkpoint", str(cartpole), "--episodes", "1", "--video", str(video)]) == 0
    printed = capsys.readouterr().out
    ret = float(printed.split("returns ")[1].rstrip(")\n"))
    assert _mp4(video) == (int(ret) + 1, (600, 400))

    # Two episodes in one GIF: Pillow may merge identical consecutive frames, adding their delays,
    # so the total duration (20 ms a frame at CartPole's 50 fps) is what is exact.
    gif = tmp_path / "cartpole.gif"
    assert main(["eval", "--checkpoint", str(cartpole), "--episodes", "2", "--video", str(gif),
                 "--video-episodes", "2"]) == 0
    returns = [float(r) for r in capsys.readouterr().out.split("returns ")[1].rstrip(")\n").split(", ")]
    assert len(returns) == 2
    with Image.open(gif) as im:
        assert im.size == (600, 400)
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        assert 1 < im.n_frames <= sum(returns) + 2
    assert sum(durations) == 20 * int(sum(returns) + 2)



def test_pendulum_video_stops_at_the_frame_limit():
    import numpy as np

    from grpo.control.video import record_video

    path = Path(tempfile.mkdtemp()) / "pendulum.mp4"
    zero_torque = lambda obs: np.zeros((len(obs), 1), dtype=np.float32)  # noqa: E731
    v = record_video(zero_torque, "Pendulum-v1", path, episodes=2, max_frames=45)
    assert (v.frames, v.width, v.height, v.fps, len(v.returns)) == (45, 500, 500, 30.0, 1)
    assert _mp4(path) == (45, (500, 500))


def test_video_bad_input_is_one_line(cartpole, tmp_path, capsys, monkeypatch):
    run = cartpole
    assert main(["eval", "--checkpoint", str(run), "--video", str(tmp_path / "v.avi")]) == 2
    err = capsys.readouterr().err
    assert "unknown extension '.avi'" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--checkpoint", str(tmp_path / "nothing"), "--video", str(tmp_path / "v.gif")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err

    # An env that cannot render (its module on the path, gymnasium's module:EnvId).
    (tmp_path / "dark_envs.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["eval", "--checkpoint", str(run), "--env", "dark_envs:Dark-v0", "--video", str(tmp_path / "d.mp4")]) == 2
    err = capsys.readouterr().err
    assert "Dark-v0 does not render rgb_array frames" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.mp4").exists()

    # The writer's package missing: one line saying what to install.
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert main(["eval", "--checkpoint", str(run), "--video", str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'grpo-lab[video]'" in err and len(err.strip().splitlines()) == 1


def test_clips_of_finished_runs(tmp_path):
    from grpo.experiments.clips import write_clips
    from grpo.experiments.compare import plan

    specs = plan(["CartPole-v1"], ["grpo", "ppo"], [0], 100)
    for spec in specs:
        train(spec.algo, RunConfig(env=spec.env, total_steps=100, eval_every=100, eval_episodes=1, progress=False),
              algo_config(spec.algo, spec.env, {"group_size": 2, "groups": 2, "minibatches": 1} if spec.algo == "grpo"
                          else {"n_envs": 1, "n_steps": 64, "batch_size": 64}), tmp_path / spec.folder)
    paths = write_clips(tmp_path, specs, "mp4")
    assert [p.name for p in paths] == ["CartPole-v1-grpo.mp4", "CartPole-v1-ppo.mp4"]
    for path in paths:
        frames, size = _mp4(path)
        assert size == (300, 200) and 1 < frames <= 500  # every second pixel; at most 10 s at 50 fps


@pytest.mark.slow
def test_compare_video_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--env", "CartPole-v1", "--algos", "grpo", "ppo", "--seeds", "2", "--total-steps", "600",
            "--eval-every", "300", "--jobs", "2", "--out", str(out), "--no-progress", "--video"]
    assert main(argv) == 0
    assert "videos/CartPole-v1-grpo.gif" in capsys.readouterr().out
    for algo in ("grpo", "ppo"):
        with Image.open(out / "videos" / f"CartPole-v1-{algo}.gif") as im:
            assert im.size == (300, 200)
            assert 1 < im.n_frames <= 500


def test_compare_video_refuses_before_training(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["compare", "--video", "avi", "--out", str(tmp_path / "x")])
    assert "invalid choice" in capsys.readouterr().err
    (tmp_path / "dark_envs.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["compare", "--env", "dark_envs:Dark-v0", "--video", "--out", str(tmp_path / "y")]) == 2
    assert "does not render" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_best_seed_is_the_highest_final_eval_first_on_ties(tmp_path):
    from grpo.experiments.clips import best_specs
    from grpo.experiments.compare import plan
    from grpo.utils.io import write_json

    specs = plan(["CartPole-v1"], ["grpo", "ppo"], [0, 1, 2], 1000)
    finals = {("grpo", 0): 100.0, ("grpo", 1): 300.0, ("grpo", 2): 200.0, ("ppo", 0): 50.0, ("ppo", 1): 50.0}
    for spec in specs:  # ppo seed 2 unfinished: no summary
        if (spec.label, spec.seed) in finals:
            write_json(tmp_path / spec.folder / "summary.json", {"final_eval": finals[spec.label, spec.seed]})
    assert [(s.label, s.seed) for s in best_specs(tmp_path, specs)] == [("grpo", 1), ("ppo", 0)]
