"""A run's sampling engine, built by name: ``cached`` and ``hf`` (:mod:`grpo.llm.rollout.generation`),
``vllm`` (:mod:`grpo.llm.rollout.vllm_engine`, imported only when asked for).

Every builder takes (cfg, model, tokenizer, runtime) and returns an engine with the signature of
:func:`grpo.llm.rollout.generation.generate_cached`. An engine may define ``push_weights(model)``,
called after each policy update (vLLM's copy of the policy). A new engine is one module and one
registration here.
"""

from __future__ import annotations

from typing import Any

from grpo.core import Registry
from grpo.llm.rollout.generation import GENERATORS

GENERATOR_BUILDERS: Registry = Registry("generation engine")
GENERATOR_BUILDERS.register("cached")(lambda cfg, model, tokenizer, runtime: GENERATORS.get("cached"))
GENERATOR_BUILDERS.register("hf")(lambda cfg, model, tokenizer, runtime: GENERATORS.get("hf"))


@GENERATOR_BUILDERS.register("vllm")
def _vllm(cfg: Any, model: Any, tokenizer: Any, runtime: Any) -> Any:
    from grpo.llm.rollout.vllm_engine import VLLMGenerator  # imported only when asked for

    return VLLMGenerator(cfg, model, tokenizer, runtime)
