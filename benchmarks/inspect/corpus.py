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
from pathlib import Path


def stdlib_source(max_bytes: int) -> str:
    """Concatenated ASCII-only stdlib modules, each ending in a newline, up to max_bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.glob("*.py")):
        text = path.read_bytes()
        if not text.isascii() or b"\r" in text or b"\t" in text:
            continue  # one character per byte, no CR/tab: columns and tokens line up simply
        src = text.decode("ascii")
        try:
            list(tokenize.generate_tokens(io.StringIO(src).readline))
        except (tokenize.TokenError, SyntaxError):
            continue
        if total + len(src) > max_bytes:
            break
        parts.append(src if src.endswith("\n") else src + "\n")
        total += len(parts[-1])
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
