"""The program the ``code`` reward runs in the sandbox: it calls the solution on test inputs.

Reads ``{"solution": SOURCE, "calls": [[FUNCTION, ARGS_JSON], ...]}`` from stdin, runs the
solution as module ``solution`` (so its ``if __name__ == "__main__":`` block does not run), calls
each function on a fresh copy of its arguments and writes one line per call to its stdout:
``{"i": K, "value": RESULT}`` or ``{"i": K, "error": "..."}``. What the solution prints goes to
stderr. Expected values never enter this process, and nothing here is trusted: the solution can
rewrite this program's state, but all it can send back is data, which the trainer compares with
values it never saw (issue 11).
"""

import builtins
import json
import os
import sys
import types


def _plain(x, depth=0):
    """The return value as JSON data, never calling the solution's methods."""
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if depth > 100:
        raise ValueError("the return value is nested more than 100 levels deep")
    if t is list or t is tuple:
        return [_plain(v, depth + 1) for v in x]
    if t is dict and all(type(k) is str for k in x):
        return {k: _plain(v, depth + 1) for k, v in x.items()}
    raise TypeError("returned a value that is not JSON data (None, bool, int, float, str, list, dict with str keys)")


def _describe(err):
    try:
        return f"{type(err).__name__}: {err}"[:300]
    except BaseException:  # noqa: BLE001  the solution's exception may refuse to print
        return "an exception that cannot be printed"


def main():
    job = json.loads(sys.stdin.read())
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the solution's prints go to stderr, not into the results
    module = types.ModuleType("solution")
    module.__builtins__ = builtins
    sys.modules["solution"] = module
    try:
        exec(compile(job["solution"], "<solution>", "exec"), module.__dict__)
    except BaseException as err:  # noqa: BLE001  SystemExit too: the calls below still decide
        print(f"the solution stopped: {_describe(err)}", file=sys.stderr)
    for i, (name, args) in enumerate(job["calls"]):
        try:
            if name not in module.__dict__:
                raise NameError(f"the solution defines no {name!r}")
            fn = module.__dict__[name]
            line = json.dumps({"i": i, "value": _plain(fn(*json.loads(args)))})
        except BaseException as err:  # noqa: BLE001  one failed call fails one test
            line = json.dumps({"i": i, "error": _describe(err)})
        results.write(line + "\n")
        results.flush()  # a later call that hangs keeps what came back before it


if __name__ == "__main__":
    main()
