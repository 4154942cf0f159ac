"""Run the ``grpo`` command and SIGKILL it at the Nth call of one function: a crash at a chosen point.

    python tests/die_at_call.py MODULE:FUNCTION N grpo-arguments...

The process kills itself as the call begins (N = 0: never), e.g. ``grpo.control.train:save_checkpoint 2``
dies after the iteration of the second checkpoint has been logged, before that checkpoint is written.
Not a test module: the crash tests run it in a subprocess.
"""

import importlib
import os
import signal
import sys

from grpo.cli import main

target, n = sys.argv[1], int(sys.argv[2])
module_name, name = target.split(":")
module = importlib.import_module(module_name)
real, calls = getattr(module, name), [0]


def die_at_nth_call(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)


setattr(module, name, die_at_nth_call)
sys.exit(main(sys.argv[3:]))
