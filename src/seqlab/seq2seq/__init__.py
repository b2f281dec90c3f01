"""Sequence-to-sequence: paired data, recurrent encoder-decoder with attention, search, metrics.

Modules: `data` (pairs, vocabularies, batches), `attention` (none, Bahdanau, Luong dot/general),
`model` (the `Seq2Seq` family), `search` (greedy, sampling, batched beam search), `metrics`
(exact match, token accuracy, BLEU/chrF through sacrebleu), `plot` (attention heatmaps),
`experiment` (the task module behind ``seqlab train/eval``) and `cli` (``seqlab translate``).
"""
