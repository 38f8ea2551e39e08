# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""The Unicode TR39 confusable skeleton, from a table shipped in the package.

Two strings that a reader cannot tell apart (``Alice`` with a Latin ``A``
and ``Аlice`` with a Cyrillic one) have the same *skeleton*: UTS #39
section 4 defines it as NFD, then each character replaced by its
*prototype* from ``confusables.txt``, then NFD again. This module holds
that table and nothing else; :mod:`twisted_chat.core.names` decides how the
skeleton enters a name's key.

Why a table of our own rather than a library: the PyPI packages that carry
the data either keep it as an undirected "looks like" graph
(``confusable-homoglyphs``: which side is the prototype is lost, so no
skeleton can be computed) or compare pairs of strings instead of producing
a key (``confusables``); PyICU has the real ``SpoofChecker.getSkeleton`` but
is a C++ build against libicu for one function. So the table is Unicode's
own ``confusables.txt``, reduced to its two columns, in
``twisted_chat/data/confusables.txt``. It is loaded once, at import
(about 6,300 lines), into a ``str.translate`` table,
so a skeleton costs two normalisations and one C-speed pass.

To move to a newer Unicode release, regenerate the file from the full
``confusables.txt`` of that release::

    python -m twisted_chat.core.confusables path/to/confusables.txt

and bump :data:`twisted_chat.core.names.KEY_VERSION`, since stored keys change.
"""

from __future__ import annotations

import sys
import unicodedata
from importlib.resources import files
from pathlib import Path
from typing import Final

__all__ = ["DATA_VERSION", "PROTOTYPES", "load_prototypes", "parse", "skeleton"]

#: The Unicode release of the shipped table, as its header says.
DATA_VERSION: Final = "13.0.0"


def parse(lines: list[str]) -> dict[int, str]:
    """Read ``SOURCE ; TARGET ; ...`` lines into code point -> prototype.

    Accepts both Unicode's full file (three fields, ``#`` comments, a BOM)
    and the reduced one this package ships (two fields).
    """
    table: dict[int, str] = {}
    for raw in lines:
        line = raw.lstrip("\ufeff").split("#", 1)[0].strip()
        if not line:
            continue
        source, target, *_ = (field.strip() for field in line.split(";"))
        table[int(source, 16)] = "".join(chr(int(cp, 16)) for cp in target.split())
    return table


def load_prototypes() -> dict[int, str]:
    """Read the shipped table into a ``str.translate`` mapping."""
    data = files("twisted_chat.core") / "data" / "confusables.txt"
    return parse(data.read_text(encoding="utf-8").splitlines())


#: Loaded when the module is imported (at daemon start; BENCHMARKS.md,
#: "Start-up", has what it costs) rather than on first use, which would
#: stall the reactor on the first connection.
PROTOTYPES: Final = load_prototypes()


def skeleton(text: str) -> str:
    """UTS #39 ``skeleton(X)``: NFD, map to prototypes, NFD."""
    mapped = unicodedata.normalize("NFD", text).translate(PROTOTYPES)
    return unicodedata.normalize("NFD", mapped)


def _write_reduced(source: str) -> None:
    """Print the reduced table for the full ``confusables.txt`` at ``source``."""
    lines = Path(source).read_text(encoding="utf-8-sig").splitlines()
    header = [line for line in lines[:12] if line.startswith("#")]
    out = sys.stdout
    out.write("\n".join(header) + "\n")
    out.write(
        "#\n# Reduced for twisted-chat: SOURCE ; PROTOTYPE (code points in hex),\n"
        "# the type column (always MA) and the comments left out.\n"
        "# Regenerate: python -m twisted_chat.core.confusables confusables.txt\n"
    )
    for code, prototype in parse(lines).items():
        target = " ".join(f"{ord(char):04X}" for char in prototype)
        out.write(f"{code:04X} ; {target}\n")


if __name__ == "__main__":  # pragma: no cover - a maintenance tool
    _write_reduced(sys.argv[1])
