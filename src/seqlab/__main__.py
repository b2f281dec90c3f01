"""``python -m seqlab ...`` (and ``torchrun -m seqlab ...``) runs the command line."""

from seqlab.cli import entry

if __name__ == "__main__":
    entry()
