"""Shared network blocks: the torch pieces that model families and tasks compose.

One module per block kind:

* `cells`: hand-written Elman, LSTM (with peepholes) and GRU cells and `scan`, their one time
  loop: the readable reference for PyTorch's fused kernels, on the same parameter layout;
* `recurrent`: `StackConfig` and `RecurrentStack`, layers of one cell kind with residuals,
  bidirectional layers, dropout between layers and initialisation schemes;
* `conv`: `ConvConfig` and the dilated causal stacks `TCNStack` and `WaveNetStack`
  (`build_stack` picks one), with their left context carried in buffers;
* `attention`: Bahdanau (additive) and Luong dot / general attention over encoder states;
* `crf`: the linear-chain CRF output layer (log-partition, Viterbi, marginals, n-best, BIO/BIOES
  transition constraints) over any block's per-step scores;
* `tree`: level-wise batched tree encoders (`RecursiveNN`, `ChildSumTreeLSTM`,
  `BinaryTreeLSTM`) over a `TreeBatch`: a few large matrix products per tree depth.

Every *sequence block* (a recurrent or convolutional stack) has one call signature, so a model
or a task head swaps one for another without asking which it holds::

    y, state = block(x, state=None, lengths=None)
    # x (B, T, D_in) -> y (B, T, D_out), block.output_size == D_out

``state`` is what the block carries from one call to the next (a recurrent stack's (h,) or
(h, c); a convolution stack's per-layer buffers), None for a fresh start; ``block.initial_state
(batch_size)`` builds it explicitly. ``lengths`` (B,) marks right-padded rows. A recurrent stack
uses it to freeze its state on padding; the convolution stacks ignore it, because they are
causal and padding after a sequence never reaches its real outputs.

The cells (one layer, one direction) are the reference a recurrent stack's layers run, not
sequence blocks of their own: they take a (B, T) ``mask`` instead of lengths. Attention is not a
sequence block either: ``attention(query (B, Q), keys, values (B, S, K), mask (B, S)) ->
(context (B, K), weights (B, S))``.
"""
