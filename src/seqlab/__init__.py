"""seqlab: one toolkit, one interface, for next-element sequence models.

The main calls (`train`, `load`, `evaluate`, `sample`, `compare`, in `seqlab.api`) and the model
families are importable from here; the families load lazily, so ``import seqlab`` stays cheap::

    import seqlab
    run = seqlab.train("lstm", "input.txt", out="runs/lstm", train={"max_steps": 500})
    print(seqlab.sample(run.model, "ROMEO:", length=200))
    hmm = seqlab.CategoricalHMM(n_components=8).fit(X, lengths)   # scikit-learn style
"""

import os
from typing import Any

# OpenMP threads that spin while waiting make multi-threaded torch up to 40x slower when another
# process holds a core (PERF-NOTES, trap 1). Passive waiting costs little on a quiet machine. It
# must be set before torch loads libgomp, so it is set here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# name -> module that defines it (imported on first use)
_EXPORTS = {
    "train": "seqlab.api", "load": "seqlab.api", "evaluate": "seqlab.api",
    "sample": "seqlab.api", "compare": "seqlab.api", "Trained": "seqlab.api",
    "NGramLM": "seqlab.models.ngram", "RecurrentLM": "seqlab.models.recurrent",
    "HMMLM": "seqlab.models.hmm", "CategoricalHMM": "seqlab.models.hmm",
    "GaussianHMM": "seqlab.models.hmm", "WindowLM": "seqlab.models.window",
    "ConvLM": "seqlab.models.conv", "LinearGaussianSSM": "seqlab.models.kalman",
    "BootstrapParticleFilter": "seqlab.models.particle", "SequenceHead": "seqlab.models.heads",
    "Seq2Seq": "seqlab.seq2seq.model", "Vocab": "seqlab.data.vocab",
    "SeqlabError": "seqlab.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")
