"""Sequence-to-sequence: paired data, recurrent encoder-decoder with attention, search, metrics.

Usage, through the same CLI, config, checkpoint and resume machinery as the language models::

    seqlab train --model seq2seq --data pairs.tsv --out runs/rev \\
        model.attention=general model.hidden=128 train.max_steps=3000 [--max-minutes 10]
    seqlab train --model seq2seq --out runs/rev --resume --max-steps 6000
    seqlab eval runs/rev --data test.tsv --json        # exact_match, token_accuracy, bleu, chrf
    seqlab translate runs/rev < sources.txt            # one target per line
    seqlab translate runs/rev --input src.txt --beam-size 8 --n-best 3 --length-penalty 1.0
    seqlab translate runs/rev --input src.txt --attention-plot att.png --plot-lines 1,4

``--data`` takes TSV (source<TAB>target) or SCAN (``IN: ... OUT: ...``) lines; parallel files
are ``data.path=SRC data.target=TGT``. Tokens are words or characters per side (``data.level``,
``data.tgt_level``), with shared or separate vocabularies (``data.shared_vocab``). The special
tokens are ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3 on both sides (see `data`).
Model keys are in `model.Seq2SeqConfig`, decoding keys in `search.DecodeConfig`
(``model.decode.beam_size=5`` and so on), data keys in `data.DataConfig`.

Modules: `data` (pairs, vocabularies, bucketed batches), `model` (the `Seq2Seq` family: an
injectable encoder and decoder, by default on the shared blocks `seqlab.nn.recurrent` and
`seqlab.nn.attention`), `search` (greedy, sampling, batched beam search), `metrics` (exact match,
token accuracy, BLEU/chrF via sacrebleu), `plot` (attention heatmaps) and `cli` (``seqlab
translate``); the task behind ``seqlab train/eval`` is `seqlab.tasks.seq2seq`.
"""
