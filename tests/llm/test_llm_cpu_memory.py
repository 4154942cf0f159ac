"""--keep-freed-memory: large blocks come from the heap and stay there once freed (glibc), and the trainer
asks for it on CPU only when the option is on. The malloc settings are process-wide, so the allocator is
probed in fresh processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from grpo.llm.config import GRPOConfig
from test_llm_sft import word_tiny  # noqa: F401 (a fixture: the tiny model with a chat template)

_libc, _version = platform.libc_ver()
glibc = pytest.mark.skipif(platform.system() != "Linux" or _libc != "glibc"
                           or tuple(map(int, _version.split(".")[:2])) < (2, 33),
                           reason="mallopt and mallinfo2 (glibc 2.33+) are glibc's")

# Allocates and frees a 64 MiB block twice and reports glibc's own counts (mallinfo2): bytes in mmapped
# blocks (hblkhd) while the block lives, and bytes the heap holds (arena) after it is freed.
PROBE = r"""
import ctypes, json, sys
from grpo.llm.infra.cpu_memory import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
size = 64 << 20
out = {"kept": kept, "mapped_while_live": [], "heap_after_free": [], "same_block": None}
blocks = []
for _ in range(2):
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    out["mapped_while_live"].append(libc.mallinfo2().hblkhd)
    libc.free(p)
    out["heap_after_free"].append(libc.mallinfo2().arena)
    blocks.append(p)
out["same_block"] = blocks[0] == blocks[1]
print(json.dumps(out))
"""


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    res = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@glibc
def test_large_blocks_stay_in_the_heap_and_are_reused():
    kept = _probe("keep")
    assert kept["kept"] is True
    assert max(kept["mapped_while_live"]) < 64 << 20  # served from the heap, not an mmap of its own
    assert min(kept["heap_after_free"]) >= 64 << 20  # freed, yet still the process's
    assert kept["same_block"]  # the second allocation reuses the first's memory
    # negative control: glibc as it is maps the block on its own and unmaps it on free
    system = _probe("system")
    assert system["kept"] is False
    assert min(system["mapped_while_live"]) >= 64 << 20
    assert max(system["heap_after_free"]) < 64 << 20


def test_the_trainer_keeps_freed_memory_on_cpu_only_when_asked(random_tiny, tmp_path, monkeypatch):
    import grpo.llm.run as run

    model, tok = random_tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    calls = []
    monkeypatch.setattr(run, "keep_freed_memory", lambda device_type: calls.append(device_type) or True)
    for keep in (True, False):
        cfg = GRPOConfig(model=str(tmp_path / "m"), prompts_per_step=2, group_size=2, max_new_tokens=3, steps=1,
                         eval_split=None, beta=0.0, out=str(tmp_path / f"run-{keep}"), progress=False,
                         tensorboard=False, device="cpu", keep_freed_memory=keep)
        run.train(cfg, log=lambda _: None)
    assert calls == ["cpu"]  # the run with the option on, not the one with it off


def test_sft_keeps_freed_memory_on_cpu_only_when_asked(word_tiny, tmp_path, monkeypatch):  # noqa: F811
    import grpo.llm.infra.cpu_memory as cpu_memory
    from grpo.llm.sft import SFTConfig, train_sft

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}?"},
                                                     {"role": "assistant", "content": "ok"}]}) + "\n"
                            for i in range(2)))
    calls = []
    monkeypatch.setattr(cpu_memory, "keep_freed_memory", lambda device_type: calls.append(device_type) or True)
    for keep in (True, False):
        train_sft(SFTConfig(data=str(data), model=str(word_tiny), batch_size=2, device="cpu",
                            out=str(tmp_path / f"sft-{keep}"), keep_freed_memory=keep), log=lambda _: None)
    assert calls == ["cpu"]


def test_a_run_whose_tensors_are_not_in_host_memory_changes_nothing():
    from grpo.llm.infra.cpu_memory import keep_freed_memory

    assert keep_freed_memory("cuda") is False and keep_freed_memory("mps") is False  # mallopt not called


def test_the_option_is_on_by_default_and_can_be_turned_off_on_the_command_line():
    from grpo.cli import build_parser
    from grpo.llm.ppo_config import config_from_args

    assert GRPOConfig().keep_freed_memory is True
    cfg = config_from_args(build_parser().parse_args(["llm", "train", "--keep-freed-memory", "false"]))
    assert cfg.keep_freed_memory is False
