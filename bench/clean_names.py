"""
What cleaning a line and keying a name cost, in microseconds per call.

``clean_text`` runs on every line every client sends, so its cost on
ordinary lines matters; ``Nick.parse`` (and so ``name_key``) runs on
``/nick``, ``/join`` and ``/msg NICK``. Run it against two source trees to
compare, e.g. before and after a change::

    .venv/bin/python bench/clean_names.py --tree /work/baseline
    .venv/bin/python bench/clean_names.py --tree .

Each line gives the median and the best of ``--repeat`` timeit runs; on a
shared machine the best is the steadier figure to compare.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

LINES = {
    "ascii-short": "hi all, what's up?",
    "ascii-200": "The quick brown fox jumps over the lazy dog. " * 4 + "ok",
    "ascii-tab": "name\tcount\tnote\tsome ordinary text after it",
    "ascii-escape": "\x1b[31mred\x1b[0m text with a colour",
    "utf8-accents": "Ça va? Très bien, merci — à demain!",
    "utf8-cjk-emoji": "小明 你好 👋 今天天气很好 🙂",
    "utf8-zwj-emoji": "family: 👩\u200d👩\u200d👧 and ❤\ufe0f",
    "utf8-persian-zwnj": "می\u200cخواهم بروم",
    "utf8-bidi-forgery": "look \u202eevil\u202c here \u2028forged line",
}

NAMES = ["Alice", "guest1234", "小明", "नमस्ते", "Аlice"]


def _cost_us(call: Callable[[], object], number: int, repeat: int) -> str:
    """Median and best of ``repeat`` runs, in microseconds per call."""
    runs = [
        run / number * 1e6 for run in timeit.repeat(call, number=number, repeat=repeat)
    ]
    return f"median {statistics.median(runs):7.3f}  best {min(runs):7.3f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=".", help="source tree to import from")
    parser.add_argument("--number", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve()))
    cleaning = importlib.import_module("twisted_chat.core.cleaning")
    names = importlib.import_module("twisted_chat.core.names")
    clean: Callable[[str], str] = cleaning.clean_text
    parse: Callable[[str], object] = names.Nick.parse
    print(f"tree {Path(str(cleaning.__file__)).parent.parent}")
    for label, line in LINES.items():
        cost = _cost_us(partial(clean, line), args.number, args.repeat)
        print(f"clean_text  {label:20} {cost} per line")
    for name in NAMES:
        cost = _cost_us(partial(parse, name), args.number // 5, args.repeat)
        print(f"Nick.parse  {name:20} {cost} per call")


if __name__ == "__main__":
    main()
