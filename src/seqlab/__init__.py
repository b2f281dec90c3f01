"""seqlab: one toolkit, one interface, for next-element sequence models."""

import os

# OpenMP threads that spin while waiting make multi-threaded torch up to 40x slower when another
# process holds a core (PERF-NOTES, trap 1). Passive waiting costs little on a quiet machine. It
# must be set before torch loads libgomp, so it is set here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
