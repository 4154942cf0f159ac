"""``grpo compare --video``: a short clip of each algorithm's best seed per env, beside the curves.

The best seed is the one with the highest final evaluation (the first seed on ties). Its saved
policy plays one greedy episode (reset seed 10000, the protocol's first) for at most
``CLIP_SECONDS`` of video, every second pixel kept, into ``videos/<env>-<label>.<gif|mp4>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from grpo.experiments.compare import CONTROL_RUNNER, RunSpec

CLIP_SECONDS = 10
CLIP_FORMATS = ("gif", "mp4")


def check_clips(fmt: str, envs: Sequence[str]) -> None:
    """Before any training: the format, the writer's packages and every env's renderer."""
    from grpo.control.video import check_video

    for env in dict.fromkeys(envs):
        check_video(f"clip.{fmt}", env)


def best_specs(root: Path, specs: Sequence[RunSpec]) -> list[RunSpec]:
    """Per (env, label), the finished run of ours with the highest final eval (first seed on ties)."""
    from grpo.utils.io import read_json

    best: dict[tuple[str, str], tuple[float, RunSpec]] = {}
    for spec in specs:
        summary_path = root / spec.folder / "summary.json"
        if spec.runner != CONTROL_RUNNER or not summary_path.exists():
            continue  # peers (benchmarks/) leave no policy of ours to play
        final = read_json(summary_path).get("final_eval")
        score = float("-inf") if final is None else float(final)
        key = (spec.env, spec.label)
        if key not in best or score > best[key][0]:
            best[key] = (score, spec)
    return [spec for _, spec in best.values()]


def write_clips(root: Path, specs: Sequence[RunSpec], fmt: str = "gif") -> list[Path]:
    """Record one clip per (env, label); returns the files written, under ``root/videos``."""
    from grpo.control.evaluation import EVAL_SEED0
    from grpo.control.train import greedy_fn, load_actor
    from grpo.control.video import record_video, render_env

    if fmt not in CLIP_FORMATS:
        raise ValueError(f"--video {fmt}: choose one of {list(CLIP_FORMATS)}")
    paths = []
    for spec in best_specs(root, specs):
        actor, info = load_actor(root / spec.folder)
        env = render_env(spec.env)
        fps = float(env.metadata.get("render_fps") or 30)
        env.close()
        name = re.sub(r"[^A-Za-z0-9._-]+", "", f"{spec.env}-{spec.label}".replace(" ", "-").replace(":", "-"))
        video = record_video(greedy_fn(actor), spec.env, root / "videos" / f"{name}.{fmt}", 1, EVAL_SEED0,
                             info.max_episode_steps, fps, max_frames=int(CLIP_SECONDS * fps), stride=2)
        paths.append(video.path)
    return paths
