"""Videos of a policy: greedy episodes rendered with gymnasium's ``render_mode="rgb_array"``.

MP4 goes through imageio's ffmpeg plugin (imageio-ffmpeg ships its own ffmpeg binary), streamed
frame by frame; GIF through Pillow, one palette per frame. Both come with the ``video`` extra
(``pip install 'grpo-lab[video]'``), with pygame for the classic-control renderers. Pillow stores
GIF delays in hundredths of a second and merges identical consecutive frames (adding their
delays), so a GIF's frame count can be lower than the steps played; an MP4's is exact.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from grpo.control.envs import check_env_id
from grpo.control.evaluation import EVAL_SEED0, PolicyFn
from grpo.errors import MissingDependency

VIDEO_FORMATS = (".mp4", ".gif")
INSTALL = "pip install 'grpo-lab[video]'"


@dataclass
class VideoResult:
    """What was written: the file, its frames (before GIF merging), size and the episodes' returns."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    returns: list[float]


def video_format(path: str | Path) -> str:
    """The file's extension if it is one we write, else a ValueError naming it.

    >>> video_format("runs/cartpole.MP4")
    '.mp4'
    """
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_FORMATS:
        raise ValueError(f"--video {path}: unknown extension {ext or '(none)'!r}; use .mp4 or .gif")
    return ext


def _writer_module(ext: str) -> Any:
    """imageio (MP4, checked to find its ffmpeg) or PIL.Image (GIF); MissingDependency in one line."""
    try:
        if ext == ".gif":
            from PIL import Image

            return Image
        import imageio.v2 as imageio
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return imageio
    except (ImportError, RuntimeError) as err:
        need = "Pillow" if ext == ".gif" else "imageio and imageio-ffmpeg"
        raise MissingDependency(f"writing {ext} videos needs {need} ({err}): {INSTALL}") from None


def render_env(env_id: str, max_episode_steps: int | None = None) -> gym.Env:
    """``env_id`` made with ``render_mode="rgb_array"``; ValueError when it cannot render frames."""
    check_env_id(env_id)
    # pygame draws off-screen: no display, no audio, no greeting on stdout.
    for key, value in (("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy"), ("PYGAME_HIDE_SUPPORT_PROMPT", "1")):
        os.environ.setdefault(key, value)
    spec = gym.spec(env_id.split(":")[-1])
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    try:
        with warnings.catch_warnings():  # an env without rgb_array is refused below, in one line
            warnings.simplefilter("ignore")
            env = gym.make(env_id, render_mode="rgb_array", disable_env_checker=True, **kwargs)
    except TypeError as err:
        raise ValueError(f"env {spec.id} does not render (its constructor takes no render_mode: {err})") from None
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise ValueError(f"env {spec.id} does not render rgb_array frames (its render modes: "
                         f"{env.metadata.get('render_modes', [])}); no video can be made of it")
    return env


def _frame(env: gym.Env, env_id: str) -> np.ndarray:
    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as err:
        raise MissingDependency(f"rendering {env_id} needs pygame ({err}): {INSTALL}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise ValueError(f"env {env_id} returned {type(frame).__name__} from render(), not an RGB frame "
                         "[H, W, 3]; no video can be made of it")
    return frame[..., :3]


def check_video(path: str | Path, env_id: str) -> None:
    """Fail before any training or loading: bad extension, missing package, an env that cannot render."""
    ext = video_format(path)
    _writer_module(ext)
    env = render_env(env_id)
    try:
        env.reset(seed=0)
        _frame(env, env_id)
    finally:
        env.close()


class _Writer:
    """Streams frames [H, W, 3] uint8 to an MP4 (ffmpeg) or collects palette images for a GIF."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.ext = path, fps, video_format(path)
        self.lib = _writer_module(self.ext)
        self.images: list[Any] = []
        self.mp4 = None
        if self.ext == ".mp4":  # libx264 needs even sizes: macro_block_size 2 pads odd ones by one pixel
            self.mp4 = self.lib.get_writer(path, fps=fps, codec="libx264", macro_block_size=2,
                                           ffmpeg_log_level="error")

    def append(self, frame: np.ndarray) -> None:
        if self.mp4 is not None:
            self.mp4.append_data(frame)
        else:  # 1 byte per pixel kept in memory instead of 3
            self.images.append(self.lib.fromarray(frame).convert("P", palette=self.lib.Palette.ADAPTIVE))

    def close(self) -> None:
        if self.mp4 is not None:
            self.mp4.close()
        elif self.images:
            self.images[0].save(self.path, save_all=True, append_images=self.images[1:],
                                duration=round(1000 / self.fps), loop=0)


def record_video(policy: PolicyFn, env_id: str, path: str | Path, episodes: int = 1, seed0: int = EVAL_SEED0,
                 max_episode_steps: int | None = None, fps: float | None = None,
                 max_frames: int | None = None, stride: int = 1) -> VideoResult:
    """Play ``episodes`` greedy episodes (reset seeds ``seed0 ..``) and write them to ``path``.

    One frame after each reset and after each step; ``max_frames`` stops early (a short clip),
    ``stride`` keeps every stride-th pixel (a smaller file). Returns what was written.
    """
    path = Path(path)
    video_format(path)
    if episodes < 1 or (max_frames is not None and max_frames < 1) or stride < 1:
        raise ValueError("--video-episodes, the frame limit and the stride must be >= 1")
    env = render_env(env_id, max_episode_steps)
    fps = fps or float(env.metadata.get("render_fps") or 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(path, fps)
    count, returns, shape = 0, [], (0, 0)
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed0 + ep)
            total, done = 0.0, False
            while True:
                frame = _frame(env, env_id)[::stride, ::stride]  # [H, W, 3]
                shape = frame.shape[:2]
                writer.append(np.ascontiguousarray(frame))
                count += 1
                if done or (max_frames is not None and count >= max_frames):
                    break
                action = policy(np.asarray(obs, dtype=np.float32)[None])[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
            if max_frames is not None and count >= max_frames:
                break
    finally:
        env.close()
        writer.close()
    return VideoResult(path, count, shape[1], shape[0], fps, returns)
