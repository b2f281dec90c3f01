"""A linear-chain conditional random field over per-step scores: training, decoding, marginals.

A CRF head sits on top of any sequence block (recurrent, convolutional, a window classifier):
the block's features go through a linear layer to *emissions* e (B, T, K), one score per
position and tag, and the CRF adds tag-to-tag scores. A tag sequence y_0 .. y_{n-1} of a
sequence of length n scores::

    s(y) = start[y_0] + sum_t e[t, y_t] + sum_{t>=1} trans[y_{t-1}, y_t] + end[y_{n-1}]

and p(y | x) = exp(s(y)) / Z with Z the sum of exp(s) over all K^n tag sequences (Lafferty,
McCallum & Pereira 2001; the BiLSTM-CRF tagger of Huang, Xu & Yu 2015 and Lample et al. 2016).
``trans[i, j]`` scores tag i followed by tag j; the parameter names and layout are pytorch-crf's
(``start_transitions``, ``end_transitions``, ``transitions``), so its state dict loads here.

Every quantity is a recursion over time on the (K,) vector of one position, vectorised over the
batch and the tag dimension, and kept in log space with logsumexp, so nothing underflows on long
sequences (Rabiner 1989 for the lattice algorithms; Sutton & McCallum 2012, "An introduction to
conditional random fields", section 4, for the CRF forms)::

    forward   alpha_0 = start + e_0
              alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + trans[i, j]) + e_t[j]
              log Z = logsumexp_j(alpha_{n-1}[j] + end[j])
    backward  beta_{n-1} = end
              beta_t[i] = logsumexp_j(trans[i, j] + e_{t+1}[j] + beta_{t+1}[j])
    marginal  p(y_t = j) = exp(alpha_t[j] + beta_t[j] - log Z)
    pairwise  p(y_{t-1} = i, y_t = j) = exp(alpha_{t-1}[i] + trans[i, j] + e_t[j] + beta_t[j]
                                            - log Z)
    Viterbi   the forward recursion with max for logsumexp, plus back-pointers

The gradient of log Z is the expected feature count (the marginals for e, start and end, the
pairwise marginals for trans), so `log_partition` backpropagates through one explicit backward
pass (an `autograd.Function`, see `_LogPartition`) instead of T steps of autograd bookkeeping.
`nbest` is the k-best Viterbi (the "list Viterbi" of Seshadri & Sundberg 1994): every (position,
tag) keeps the k best prefixes ending there, which is exact because a prefix of one of the k best
paths is one of the k best prefixes into its cell.

Padding: a batch holds sequences of different lengths as left-aligned rows (each sequence is a
prefix of its row), given as ``mask`` (B, T) or ``lengths`` (B,) as the sequence blocks of
`seqlab.nn` take them. Emissions and tags on padding are never read (they may hold anything,
NaN included), and padded positions get zero marginals and zero gradients.

Constraints: boolean ``allowed_start`` (K,), ``allowed_trans`` (K, K) and ``allowed_end`` (K,)
put -inf on forbidden scores, so no forbidden path has any probability, and Viterbi and n-best
never return one. `bio_constraints` builds them from tag names for BIO (IOB2) and BIOES.

    crf = LinearChainCRF(len(tags), *bio_constraints(tags, "BIO"))
    y, _ = stack(x, lengths=lengths)                     # (B, T, D), any sequence block
    loss = crf(proj(y), gold, lengths=lengths)           # mean NLL over the batch
    paths, scores = crf.viterbi(proj(y), lengths=lengths)
"""

from __future__ import annotations

import re
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from seqlab.errors import SeqlabError

Reduction = Literal["none", "sum", "mean", "token_mean"]
REDUCTIONS = ("none", "sum", "mean", "token_mean")


# --- lattice recursions (time-major: e is (T, B, K)) -------------------------------------------
class _Shifts:
    """Keeps a recursion's scores near zero: every `RENORM` steps it subtracts each row's
    maximum and remembers it, so float32 keeps its precision however long the sequence (the
    scores themselves grow linearly with T). Marginals are softmaxes within one position and
    never need the constants back; log Z and path scores add them back with `total`."""

    RENORM = 16

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[Tensor] = []  # (B,) each

    def __call__(self, x: Tensor, t: int) -> Tensor:
        if t % self.RENORM:
            return x
        m = x.detach().flatten(1).amax(1)  # (B,); shifting by a constant changes no gradient
        m = torch.where(torch.isfinite(m), m, 0.0)  # a row with nothing allowed stays -inf
        self.steps.append(t)
        self.values.append(m)
        return x - m.view(-1, *(1,) * (x.dim() - 1))

    def total(self, last: Tensor) -> Tensor:
        """The sum of the constants subtracted at steps <= last (B,)."""
        steps = torch.tensor(self.steps, device=last.device)
        return (torch.stack(self.values) * (steps[:, None] <= last)).sum(0)


def _forward(e: Tensor, lengths: Tensor, start: Tensor, trans: Tensor, end: Tensor
             ) -> tuple[Tensor, Tensor]:
    """Shifted forward scores alpha (T, B, K), run over every column, and log Z (B,)."""
    shift = _Shifts()
    a = shift(start + e[0], 0)  # (B, K)
    out = [a]
    trans_t = trans.t()  # (K_next, K_prev): reduce over the last, contiguous axis
    for t in range(1, e.shape[0]):
        # (B, 1, K_prev) + (K_next, K_prev) -> logsumexp over K_prev -> (B, K_next)
        a = shift(torch.logsumexp(a.unsqueeze(1) + trans_t, dim=2) + e[t], t)
        out.append(a)
    alphas = torch.stack(out)
    return alphas, _log_z(alphas, lengths, end, shift)


def _forward_kept(e: Tensor, lengths: Tensor, start: Tensor, trans: Tensor, end: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`_forward` that also keeps what the backward pass needs: alpha (T, B, K), log Z (B,),
    z (T-1, B, K_next, K_prev) and s (T-1, B, K_next).

    Each step's logsumexp is spelled out, so that its terms z_t[j, i] = exp(alpha_{t-1}[i] +
    trans[i, j] - m_t[j]) (m_t[j] the largest exponent of column j) and their sums s_t[j] are
    kept: z_t[j, i] / s_t[j] is the probability that the tag before a j at t is i.
    """
    T, B, K = e.shape
    shift = _Shifts()
    a = shift(start + e[0], 0)
    out = [a]
    z = e.new_empty(T - 1, B, K, K)
    sums = []
    trans_t = trans.t()
    lowest = torch.finfo(e.dtype).min  # a column of -inf (j unreachable) gets s = 0, not NaN
    for t in range(1, T):
        x = a.unsqueeze(1) + trans_t  # (B, K_next, K_prev)
        m = x.amax(2, keepdim=True).clamp_min_(lowest)  # (B, K_next, 1)
        s = torch.exp(x.sub_(m), out=z[t - 1]).sum(2)  # (B, K_next)
        a = shift(s.log().add_(m.squeeze(2)).add_(e[t]), t)
        out.append(a)
        sums.append(s)
    alphas = torch.stack(out)
    s_all = torch.stack(sums) if sums else e.new_empty(0, B, K)
    return alphas, _log_z(alphas, lengths, end, shift), z, s_all


def _log_z(alphas: Tensor, lengths: Tensor, end: Tensor, shift: _Shifts) -> Tensor:
    """log Z (B,) from the shifted forward scores (T, B, K)."""
    return torch.logsumexp(_last(alphas, lengths) + end, dim=-1) + shift.total(lengths - 1)


def _betas(e: Tensor, trans: Tensor, end: Tensor, lengths: Tensor) -> Tensor:
    """Shifted backward scores beta (T, B, K); beta = end at a row's last position and after."""
    T, B, K = e.shape
    shift = _Shifts()
    b = end.expand(B, K)
    out = [b] * T
    # inside[t, b]: position t is before row b's last one, so beta_t comes from beta_{t+1}
    inside = (torch.arange(T, device=e.device)[:, None] < (lengths - 1)).unsqueeze(2)  # (T, B, 1)
    for t in range(T - 2, -1, -1):
        # (K_prev, K_next) + (B, 1, K_next) -> logsumexp over K_next -> (B, K_prev)
        rec = torch.logsumexp(trans + (e[t + 1] + b).unsqueeze(1), dim=2)
        b = shift(torch.where(inside[t], rec, end), T - 1 - t)
        out[t] = b
    return torch.stack(out)


def _last(x: Tensor, lengths: Tensor) -> Tensor:
    """Each row's entry at its last position: x (T, B, ...) -> (B, ...)."""
    return x[lengths - 1, torch.arange(x.shape[1], device=x.device)]


def _time_mask(T: int, lengths: Tensor) -> Tensor:
    """(T, B) bool, True on real positions."""
    return torch.arange(T, device=lengths.device)[:, None] < lengths


def _unary(alphas: Tensor, betas: Tensor, ok: Tensor) -> Tensor:
    """p(y_t = j) (T, B, K): alpha_t + beta_t normalised within each position; 0 where not ok."""
    return torch.where(ok.unsqueeze(2), torch.softmax(alphas + betas, dim=-1), 0.0)


class _LogPartition(torch.autograd.Function):
    """log Z (B,) by the forward algorithm; its gradient by the backward pass over the lattice.

    d log Z / d e_t = mu_t, the marginals, which the backward pass carries in probability space
    (bounded by 1, so nothing overflows, and what underflows is below float resolution anyway)
    as the reverse of the forward recursion. With P_t[i, j] = softmax_i(alpha_{t-1}[i] +
    trans[i, j]) = z_t[j, i] / s_t[j], the probability that the tag before a j at t is i::

        mu_{n-1} = softmax(alpha_{n-1} + end),   xi_t[i, j] = P_t[i, j] mu_t[j],
        mu_{t-1}[i] = sum_j xi_t[i, j],           d log Z / d trans = sum_t xi_t.

    This is what autograd would compute through the logsumexps, but from the terms the forward
    pass kept, with one small matrix-vector product per step and one batched product at the
    end. The columns of P_t sum to 1 to rounding, so the mass of mu does not drift on long
    sequences. Memory: z is (T-1, B, K, K), what autograd would keep as well.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, e: Tensor, lengths: Tensor, start: Tensor, trans: Tensor,
                end: Tensor) -> Tensor:
        if not any(ctx.needs_input_grad):  # type: ignore[attr-defined]  # set by apply
            return _forward(e, lengths, start, trans, end)[1]
        alphas, log_z, z, s = _forward_kept(e, lengths, start, trans, end)
        ctx.save_for_backward(lengths, end, alphas, log_z, z, s)
        return log_z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        lengths, end, alphas, log_z, z, s = ctx.saved_tensors
        # A row with no allowed path (log Z = -inf) gets a zero gradient, not NaN.
        g = torch.where(torch.isfinite(log_z), g, 0.0)
        mu_last = torch.softmax(_last(alphas, lengths) + end, dim=-1).nan_to_num(0.0) * g[:, None]
        mu, grad_trans = _backward(lengths, z, s, mu_last)
        return (mu, None, mu[0].sum(0), grad_trans, mu_last.sum(0))


def _backward(lengths: Tensor, z: Tensor, s: Tensor, mu_last: Tensor, with_trans: bool = True
              ) -> tuple[Tensor, Tensor | None]:
    """Marginals mu (T, B, K), zero on padding, and sum_t xi_t (K, K) if asked, from the last
    position's marginals mu_last (B, K) (each row already weighted by its output gradient)."""
    T, K = z.shape[0] + 1, z.shape[2]
    # is_last (T, B, 1): position t is row b's last one
    is_last = (torch.arange(T, device=z.device)[:, None] == lengths - 1).unsqueeze(2)
    s = s.clamp_min(1.0)  # s is 0 (nothing reaches j, z is 0) or >= 1 (the largest term is 1)
    mu = torch.zeros_like(mu_last)  # rows not started yet (padding) carry zeros
    mus, ws = [mu] * T, [mu] * (T - 1)
    for t in range(T - 1, 0, -1):
        mu = torch.where(is_last[t], mu_last, mu)  # a row's recursion starts at its end
        mus[t] = mu
        ws[t - 1] = w = mu / s[t - 1]  # (B, K_next)
        # (B, 1, K_next) @ (B, K_next, K_prev): mu_{t-1}[i] = sum_j w[j] z_t[j, i]
        mu = torch.bmm(w.unsqueeze(1), z[t - 1]).squeeze(1)
    mus[0] = torch.where(is_last[0], mu_last, mu)
    if not with_trans:
        return torch.stack(mus), None
    if T == 1:
        return torch.stack(mus), mu_last.new_zeros(K, K)
    # sum over all (t, b) of w[j] z_t[j, i], batched over j: (K, 1, TB) @ (K, TB, K_prev)
    w_all = torch.stack(ws).flatten(0, 1)  # (TB, K_next)
    grad_trans = torch.bmm(w_all.t().unsqueeze(1), z.flatten(0, 1).transpose(0, 1))
    return torch.stack(mus), grad_trans.squeeze(1).t()


def _viterbi(e: Tensor, lengths: Tensor, start: Tensor, trans: Tensor, end: Tensor
             ) -> tuple[Tensor, Tensor]:
    """Best path (B, T) (the last tag repeated over padding) and its score (B,)."""
    T, _, K = e.shape
    shift = _Shifts()
    v = shift(start + e[0], 0)  # (B, K)
    vs, pointers = [v], []
    for t in range(1, T):
        best, ptr = (v.unsqueeze(2) + trans).max(dim=1)  # over K_prev -> (B, K_next)
        v = shift(best + e[t], t)
        vs.append(v)
        pointers.append(ptr)
    score, tag = (_last(torch.stack(vs), lengths) + end).max(dim=-1)  # (B,)
    score = score + shift.total(lengths - 1)
    if T == 1:
        return tag[:, None], score
    # On padding the back-pointers are the identity, so a row's path stays on its last tag.
    ptrs = torch.where(_time_mask(T, lengths)[1:, :, None], torch.stack(pointers),
                       torch.arange(K, device=e.device))  # (T-1, B, K)
    cur = tag.unsqueeze(1)  # (B, 1)
    path = [cur]
    for t in range(T - 2, -1, -1):
        cur = ptrs[t].gather(1, cur)  # the tag at t that leads to the path's tag at t+1
        path.append(cur)
    return torch.cat(path[::-1], dim=1), score


def _nbest(e: Tensor, lengths: Tensor, start: Tensor, trans: Tensor, end: Tensor, k: int
           ) -> tuple[Tensor, Tensor]:
    """The k best paths (B, k, T) and their scores (B, k), best first; -inf where fewer exist.

    Cell (t, j) keeps its k best prefixes v[t] (B, K, k). A new cell ranks the K*k extensions
    (prev tag i, prev rank r) and keeps the top k, recording the flat index i*k + r.
    """
    T, B, K = e.shape
    shift = _Shifts()
    v = e.new_full((B, K, k), -torch.inf)
    v[:, :, 0] = start + e[0]
    v = shift(v, 0)
    vs, pointers = [v], []
    trans_t = trans.t()[None, :, :, None]  # (1, K_next, K_prev, 1)
    for t in range(1, T):
        cand = (v.unsqueeze(1) + trans_t).reshape(B, K, K * k)  # (B, K_next, K_prev*k)
        top, ptr = cand.topk(k, dim=-1)  # (B, K_next, k)
        v = shift(top + e[t].unsqueeze(2), t)
        vs.append(v)
        pointers.append(ptr)
    final = (_last(torch.stack(vs), lengths) + end[:, None]).reshape(B, K * k)
    scores, cur = final.topk(k, dim=-1)  # (B, k), flat indices tag*k + rank
    scores = scores + shift.total(lengths - 1)[:, None]
    path = [cur // k]
    if T > 1:
        ident = torch.arange(K * k, device=e.device).view(K, k)
        ptrs = torch.where(_time_mask(T, lengths)[1:, :, None, None], torch.stack(pointers),
                           ident).flatten(2)  # (T-1, B, K*k)
        for t in range(T - 2, -1, -1):
            cur = ptrs[t].gather(1, cur)
            path.append(cur // k)
    return torch.stack(path[::-1], dim=2), scores


# --- the layer ----------------------------------------------------------------------------------
class LinearChainCRF(nn.Module):
    """A linear-chain CRF over K tags, with optional hard constraints on the tag sequence.

    Args:
        num_tags: K.
        allowed_start: (K,) bool, which tags may begin a sequence; None allows all.
        allowed_trans: (K, K) bool, ``allowed_trans[i, j]``: tag j may follow tag i.
        allowed_end: (K,) bool, which tags may end a sequence.

    The scores start at zero, so a fresh layer is deterministic and adds nothing to the
    emissions until it is trained. The constraints are buffers: they travel in the state dict.
    """

    start_transitions: nn.Parameter  # (K,)
    end_transitions: nn.Parameter  # (K,)
    transitions: nn.Parameter  # (K, K), [i, j] scores tag i followed by tag j
    allowed_start: Tensor
    allowed_trans: Tensor
    allowed_end: Tensor

    def __init__(self, num_tags: int, allowed_start: Tensor | None = None,
                 allowed_trans: Tensor | None = None, allowed_end: Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise SeqlabError(f"num_tags must be an int >= 1, got {num_tags!r}")
        K = self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.zeros(K))
        self.end_transitions = nn.Parameter(torch.zeros(K))
        self.transitions = nn.Parameter(torch.zeros(K, K))
        for name, value, shape in (("allowed_start", allowed_start, (K,)),
                                   ("allowed_trans", allowed_trans, (K, K)),
                                   ("allowed_end", allowed_end, (K,))):
            self.register_buffer(name, _check_allowed(name, value, shape))

    def extra_repr(self) -> str:
        n = int(self.allowed_trans.sum())
        return f"num_tags={self.num_tags}, allowed transitions={n}/{self.num_tags ** 2}"

    def potentials(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(start (K,), trans (K, K), end (K,)) with -inf on every forbidden score."""
        dtype = dtype or self.transitions.dtype

        def masked(ok: Tensor, p: Tensor) -> Tensor:
            return torch.where(ok, p.to(dtype), -torch.inf)

        return (masked(self.allowed_start, self.start_transitions),
                masked(self.allowed_trans, self.transitions),
                masked(self.allowed_end, self.end_transitions))

    # ---- public API: every method takes emissions (B, T, K) and mask (B, T) or lengths (B,)
    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None, *,
                lengths: Tensor | None = None, reduction: Reduction = "mean") -> Tensor:
        """Negative log-likelihood -log p(tags | emissions): (B,) for ``reduction="none"``,
        else the sum, the mean over sequences, or ``"token_mean"`` (sum / number of tokens)."""
        if reduction not in REDUCTIONS:
            raise SeqlabError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        e, lengths = self._prepare(emissions, mask, lengths)
        start, trans, end = self.potentials(e.dtype)
        nll = _LogPartition.apply(e, lengths, start, trans, end) \
            - self._path_score(e, tags, lengths, start, trans, end)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        return nll.sum() / lengths.sum()

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None, *,
                      lengths: Tensor | None = None) -> Tensor:
        """log Z (B,), the log of the summed exp-scores of every allowed tag sequence."""
        e, lengths = self._prepare(emissions, mask, lengths)
        return _LogPartition.apply(e, lengths, *self.potentials(e.dtype))

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None, *,
              lengths: Tensor | None = None) -> Tensor:
        """s(tags) (B,), the unnormalised log score of one tag sequence per row."""
        e, lengths = self._prepare(emissions, mask, lengths)
        return self._path_score(e, tags, lengths, *self.potentials(e.dtype))

    def marginals(self, emissions: Tensor, mask: Tensor | None = None, *,
                  lengths: Tensor | None = None) -> Tensor:
        """p(y_t = j | x) (B, T, K) by forward-backward; zero on padding and on a row with no
        allowed path.

        Differentiable: with autograd recording, by the log-space backward recursion (beta), a
        graph autograd can go through; otherwise by the faster probability-space backward pass
        that the gradient of log Z uses (`_LogPartition`). The two agree to rounding.
        """
        e, lengths = self._prepare(emissions, mask, lengths)
        start, trans, end = self.potentials(e.dtype)
        if torch.is_grad_enabled() and any(x.requires_grad for x in (e, start, trans, end)):
            alphas, _ = _forward(e, lengths, start, trans, end)
            ok = _time_mask(e.shape[0], lengths)
            mu = _unary(alphas, _betas(e, trans, end, lengths), ok).nan_to_num(0.0)
        else:
            alphas, _, z, s = _forward_kept(e, lengths, start, trans, end)
            mu_last = torch.softmax(_last(alphas, lengths) + end, dim=-1).nan_to_num(0.0)
            mu, _ = _backward(lengths, z, s, mu_last, with_trans=False)
        return mu.transpose(0, 1)

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor | None = None, *,
                lengths: Tensor | None = None) -> tuple[list[list[int]], Tensor]:
        """The best tag sequence of every row (a list of its length) and its score (B,)."""
        e, lengths = self._prepare(emissions, mask, lengths)
        path, score = _viterbi(e, lengths, *self.potentials(e.dtype))
        return [p[:n] for p, n in zip(path.tolist(), lengths.tolist(), strict=True)], score

    @torch.no_grad()
    def nbest(self, emissions: Tensor, mask: Tensor | None = None, *, k: int,
              lengths: Tensor | None = None) -> tuple[list[list[list[int]]], Tensor]:
        """The k best tag sequences of every row, best first, and their scores (B, k).

        A row with fewer than k allowed sequences lists them all; its missing scores are -inf.
        """
        if not isinstance(k, int) or k < 1:
            raise SeqlabError(f"k must be an int >= 1, got {k!r}")
        e, lengths = self._prepare(emissions, mask, lengths)
        paths, scores = _nbest(e, lengths, *self.potentials(e.dtype), k)
        found = torch.isfinite(scores).tolist()
        return [[p[:n] for p, ok in zip(row, oks, strict=True) if ok] for row, oks, n in
                zip(paths.tolist(), found, lengths.tolist(), strict=True)], scores

    # ---- helpers
    def _prepare(self, emissions: Tensor, mask: Tensor | None, lengths: Tensor | None
                 ) -> tuple[Tensor, Tensor]:
        """Checked emissions, time-major (T, B, K), zero on padding, and lengths (B,)."""
        if not isinstance(emissions, Tensor) or emissions.dim() != 3 \
                or emissions.shape[2] != self.num_tags or not emissions.is_floating_point():
            got = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions)
            raise SeqlabError(f"emissions must be a float tensor (B, T, {self.num_tags}), "
                              f"got {got}")
        B, T, _ = emissions.shape
        if B == 0 or T == 0:
            raise SeqlabError(f"emissions must have B >= 1 and T >= 1, got {(B, T)}")
        lengths = resolve_lengths(B, T, mask, lengths, emissions.device)
        dtype = torch.promote_types(emissions.dtype, self.transitions.dtype)
        e = emissions.to(dtype).transpose(0, 1)  # (T, B, K)
        real = _time_mask(T, lengths).unsqueeze(2)
        return torch.where(real, e, 0.0), lengths

    def _path_score(self, e: Tensor, tags: Tensor, lengths: Tensor, start: Tensor,
                    trans: Tensor, end: Tensor) -> Tensor:
        """s(tags) (B,) from time-major emissions, vectorised over batch and time."""
        T, B, K = e.shape
        if not isinstance(tags, Tensor) or tuple(tags.shape) != (B, T) \
                or tags.is_floating_point():
            got = tuple(tags.shape) if isinstance(tags, Tensor) else type(tags)
            raise SeqlabError(f"tags must be an integer tensor (B, T) = {(B, T)}, got {got}")
        real = _time_mask(T, lengths).t()  # (B, T)
        bad = real & ((tags < 0) | (tags >= K))
        if bad.any():
            raise SeqlabError(f"tags must be in [0, {K}) on real positions, got "
                              f"{tags[bad].unique().tolist()}")
        y = tags.long().masked_fill(~real, 0)  # padding tags may be anything (-100, pad ids)
        emit = e.transpose(0, 1).gather(2, y.unsqueeze(2)).squeeze(2)  # (B, T)
        step = trans[y[:, :-1], y[:, 1:]]  # (B, T-1)
        last = y.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (start[y[:, 0]] + torch.where(real, emit, 0.0).sum(1)
                + torch.where(real[:, 1:], step, 0.0).sum(1) + end[last])


def resolve_lengths(B: int, T: int, mask: Tensor | None, lengths: Tensor | None,
                    device: torch.device) -> Tensor:
    """Lengths (B,) int64 from a left-aligned mask (B, T), from lengths, or T for every row."""
    if mask is not None and lengths is not None:
        raise SeqlabError("give mask or lengths, not both")
    if mask is not None:
        if not isinstance(mask, Tensor) or tuple(mask.shape) != (B, T):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise SeqlabError(f"mask must be a tensor (B, T) = {(B, T)}, got {got}")
        mask = mask.to(device=device, dtype=torch.bool)
        lengths = mask.sum(1)
        prefix = torch.arange(T, device=device) < lengths[:, None]
        if not torch.equal(mask, prefix):
            row = int((mask != prefix).any(1).nonzero()[0])
            raise SeqlabError("mask rows must be left-aligned (ones, then zeros), got row "
                              f"{row} = {mask[row].int().tolist()}")
    elif lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    if tuple(lengths.shape) != (B,) or lengths.is_floating_point():
        raise SeqlabError(f"lengths must be integers of shape ({B},), got "
                          f"{lengths.dtype} {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > T)).any()):
        raise SeqlabError(f"every length must be in [1, T={T}], got {lengths.tolist()}")
    return lengths.long()


def _check_allowed(name: str, value: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    if value is None:
        return torch.ones(shape, dtype=torch.bool)
    value = torch.as_tensor(value)
    if tuple(value.shape) != shape or value.dtype != torch.bool:
        raise SeqlabError(f"{name} must be a bool tensor of shape {shape}, got "
                          f"{value.dtype} {tuple(value.shape)}")
    if value.dim() == 1 and not value.any():
        raise SeqlabError(f"{name} forbids every tag, so no tag sequence is allowed")
    return value.clone()


# --- constraints from tag names -----------------------------------------------------------------
_TAG = re.compile(r"^(?P<prefix>[BIES])-(?P<type>.+)$")


def _parse_tag(tag: str, scheme: str) -> tuple[str, str]:
    """("O", "") or (prefix, chunk type) for one tag name."""
    if tag == "O":
        return "O", ""
    m = _TAG.match(tag)
    valid = "BI" if scheme == "BIO" else "BIES"
    if m is None or m["prefix"] not in valid:
        forms = "O, " + ", ".join(f"{p}-X" for p in valid)
        raise SeqlabError(f"tag {tag!r} is not a {scheme} tag; expected one of: {forms}")
    return m["prefix"], m["type"]


def _may_follow(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """The rule both schemes share: I-X (and E-X) only continue a chunk of type X."""
    (pa, ta), (pb, tb) = a, b
    if pb in "IE":
        return pa in "BI" and ta == tb
    return True


def bio_constraints(tags: list[str], scheme: Literal["BIO", "BIOES"] = "BIO"
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """(allowed_start (K,), allowed_trans (K, K), allowed_end (K,)) for tags named like B-NP.

    BIO (IOB2): I-X only after B-X or I-X, and never first. BIOES adds E-X (a chunk's last
    token) and S-X (a one-token chunk): after B-X or I-X only I-X or E-X; I-X and E-X only
    after B-X or I-X; a sequence starts with O, B or S and ends with O, E or S.
    """
    if scheme not in ("BIO", "BIOES"):
        raise SeqlabError(f"scheme must be 'BIO' or 'BIOES', got {scheme!r}")
    parsed = [_parse_tag(t, scheme) for t in tags]
    K = len(parsed)
    start = torch.tensor([p not in "IE" for p, _ in parsed], dtype=torch.bool)
    trans = torch.tensor([[_may_follow(a, b) for b in parsed] for a in parsed],
                         dtype=torch.bool).reshape(K, K)
    end = torch.ones(K, dtype=torch.bool)
    if scheme == "BIOES":
        open_chunk = torch.tensor([p in "BI" for p, _ in parsed], dtype=torch.bool)
        trans &= ~(open_chunk[:, None] & ~torch.tensor([p in "IE" for p, _ in parsed])[None, :])
        end = ~open_chunk
    return start, trans, end
