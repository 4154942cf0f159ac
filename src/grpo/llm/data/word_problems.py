"""Built-in task ``word-problems``: arithmetic word problems as chat messages, numeric answers.

Small numbers, one or two operations, several templates with varied names and objects, so that a
small instruct model (SmolLM2-135M-Instruct) solves part of them greedily and GRPO has room to lift
it. Generated from templates with fixed seeds: the test split (500 problems) first, then the train
split (5,000 problems) from another seed, leaving out every problem whose text is in the test split.
Each row: ``{"prompt": [system, user], "answer": "12"}``; scored by the ``numeric`` reward.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from grpo.llm.data.sources import SplitNotFound

SYSTEM = "Solve the math problem in one or two short sentences. End with: The answer is N."
TRAIN_SIZE, TEST_SIZE = 5000, 500
TRAIN_SEED, TEST_SEED = 20_261_202, 7_919

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jack", "Kate", "Leo",
         "Maya", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tina", "Victor", "Wendy", "Yusuf", "Zoe", "Omar"]
OBJECTS = ["apples", "marbles", "stickers", "pencils", "cookies", "books", "cards", "shells", "stamps",
           "balloons", "coins", "eggs", "flowers", "toy cars", "oranges", "crayons"]
CONTAINERS = ["boxes", "bags", "baskets", "jars", "packs"]

Problem = tuple[str, int]  # (question text, answer)


def _add(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a, b = r.randint(2, 20), r.randint(2, 12)
    return f"{n} has {a} {o}. {m} gives {n} {b} more {o}. How many {o} does {n} have now?", a + b


def _sub(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a = r.randint(6, 20)
    b = r.randint(2, a - 1)
    return f"{n} had {a} {o} and gave {b} of them to {m}. How many {o} does {n} have left?", a - b


def _mul(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"{n} has {a} {c} with {b} {o} in each. How many {o} does {n} have in all?", a * b


def _div(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    each, k = r.randint(2, 9), r.randint(2, 5)
    return (f"{n} shares {each * k} {o} equally among {k} friends. How many {o} does each friend get?", each)


def _add_sub(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a, b = r.randint(3, 15), r.randint(2, 9)
    d = r.randint(1, a + b - 1)
    return (f"{n} has {a} {o}. {n} buys {b} more and then gives {d} to {m}. "
            f"How many {o} does {n} have now?", a + b - d)


def _mul_add(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a, b, d = r.randint(2, 5), r.randint(2, 5), r.randint(1, 9)
    return (f"{n} buys {a} {c} of {o} with {b} {o} in each, and already had {d} {o}. "
            f"How many {o} does {n} have now?", a * b + d)


def _together(r: random.Random, n: str, m: str, o: str, c: str) -> Problem:
    a, b = r.randint(2, 20), r.randint(2, 20)
    return f"{n} has {a} {o} and {m} has {b} {o}. How many {o} do they have together?", a + b


TEMPLATES: list[Callable[..., Problem]] = [_add, _sub, _mul, _div, _add_sub, _mul_add, _together]


def _problems(seed: int, size: int, exclude: set[str]) -> list[Problem]:
    """``size`` distinct problems drawn with ``seed``, none of whose text is in ``exclude``."""
    r = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < size:
        template = TEMPLATES[len(out) % len(TEMPLATES)]  # every template equally often
        n, m = r.sample(NAMES, 2)
        text, answer = template(r, n, m, r.choice(OBJECTS), r.choice(CONTAINERS))
        if text not in seen:
            seen.add(text)
            out.append((text, answer))
    return out


def word_problem_rows(split: str) -> list[dict[str, Any]]:
    """Rows of split ``train`` (5,000) or ``test`` (500); the two share no problem text.

    >>> row = word_problem_rows("test")[0]
    >>> [m["role"] for m in row["prompt"]], row["answer"]
    (['system', 'user'], '24')
    """
    if split not in ("train", "test"):
        raise SplitNotFound(f"task 'word-problems' has no split {split!r}; its splits are train and test")
    test = _problems(TEST_SEED, TEST_SIZE, set())
    chosen = test if split == "test" else _problems(TRAIN_SEED, TRAIN_SIZE, {t for t, _ in test})
    return [{"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
             "answer": str(answer)} for text, answer in chosen]
