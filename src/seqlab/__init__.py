"""seqlab: one toolkit, one interface, for next-element sequence models."""

__version__ = "0.1.0"
