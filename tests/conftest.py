"""Suite-wide settings.

Hypothesis runs derandomised and without its example database, so every machine draws the same
examples and a local ``.hypothesis/`` folder changes nothing. ``HYPOTHESIS_PROFILE=explore``
draws fresh random examples on each run, to hunt for new counterexamples by hand.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
