"""Text environments for multi-turn episodes (gymnasium style; protocol in :mod:`.base`).

``--env NAME`` picks a built-in one from :data:`ENVS` (each a ``"module:Class"`` string, imported
only when chosen); ``--env module:Class`` a class of one's own; ``--env module:EnvId`` or a plain
id an environment registered with gymnasium (``gymnasium.make``) that follows the same protocol.
"""

from __future__ import annotations

# Built-in environments: name -> "module:Class", imported lazily (a run imports only its own).
ENVS: dict[str, str] = {
    "calculator": "grpo.llm.envs.calculator:CalculatorEnv",
    "code-function": "grpo.llm.envs.code_function:CodeFunctionEnv",
    "guess-number": "grpo.llm.envs.guess_number:GuessNumberEnv",
}
