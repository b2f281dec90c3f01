"""The interpretable-cells corpus: ASCII-only modules of this Python's standard library.

Files are taken in sorted order from ``sysconfig.get_paths()["stdlib"]`` (top level only, so
the corpus is the same on every machine with the same Python) until ``--mb`` megabytes; each
file must parse with `tokenize`, so the ground-truth features are defined everywhere.
"""

from __future__ import annotations

import argparse
import io
import sysconfig
import tokenize
from collections.abc import Iterator
from pathlib import Path


def stdlib_sources() -> Iterator[str]:
    """ASCII-only top-level stdlib modules that tokenize, in sorted order, each ending in a
    newline (no CR or tab, so every character is one token and one column)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")):
        text = path.read_bytes()
        if not text.isascii() or b"\r" in text or b"\t" in text:
            continue
        src = text.decode("ascii")
        try:
            list(tokenize.generate_tokens(io.StringIO(src).readline))
        except (tokenize.TokenError, SyntaxError):
            continue
        yield src if src.endswith("\n") else src + "\n"


def stdlib_source(max_bytes: int, skip_bytes: int = 0) -> str:
    """Whole modules, concatenated, up to max_bytes; `skip_bytes` first skips the modules a
    corpus of that size holds (so ``stdlib_source(n, skip_bytes=N)`` is held out from
    ``stdlib_source(N)``)."""
    parts, total, skipped, skipping = [], 0, 0, skip_bytes > 0
    for src in stdlib_sources():
        if skipping:
            if skipped + len(src) <= skip_bytes:
                skipped += len(src)
                continue
            skipping = False
        if total + len(src) > max_bytes:
            if parts:
                break
            continue  # a module larger than the budget on its own
        parts.append(src)
        total += len(src)
    return "".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mb", type=float, default=3.0)
    p.add_argument("--out", default=str(Path(__file__).parent / "_work" / "stdlib.py.txt"))
    args = p.parse_args()
    text = stdlib_source(int(args.mb * 2**20))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="ascii")
    print(f"wrote {len(text)} characters to {args.out}")


if __name__ == "__main__":
    main()
