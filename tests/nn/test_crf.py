"""Linear-chain CRF: brute force over all K^T paths, padding, gradcheck, constraints, torchcrf."""

from __future__ import annotations

import copy
import itertools
from typing import Literal

import pytest
import torch
from torch.func import functional_call

from seqlab.nn.crf import LinearChainCRF, bio_constraints

PARAMS = ("start_transitions", "transitions", "end_transitions")


def _crf(K: int, seed: int, constraints: tuple | None = None,
         dtype: torch.dtype = torch.float64) -> LinearChainCRF:
    """A CRF with random (non-zero) scores."""
    crf = LinearChainCRF(K, *(constraints or ())).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in PARAMS:
            p = getattr(crf, name)
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    return crf


def _emissions(B: int, T: int, K: int, seed: int, dtype: torch.dtype = torch.float64
               ) -> torch.Tensor:
    return torch.randn(B, T, K, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _brute(crf: LinearChainCRF, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every allowed path Y (N, T) of one sequence e (T, K) and its score (N,), best first, from
    the definition s(y) = start[y_0] + sum_t e[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_last]
    evaluated on the list of all K^T paths."""
    T, K = e.shape
    Y = torch.cartesian_prod(*[torch.arange(K)] * T).reshape(-1, T)  # (K^T, T)
    st, tr, en = (getattr(crf, n).detach().double() for n in PARAMS)
    score = (st[Y[:, 0]] + e.double()[torch.arange(T), Y].sum(1)
             + tr[Y[:, :-1], Y[:, 1:]].sum(1) + en[Y[:, -1]])
    ok = (crf.allowed_start[Y[:, 0]] & crf.allowed_trans[Y[:, :-1], Y[:, 1:]].all(1)
          & crf.allowed_end[Y[:, -1]])
    order = score[ok].argsort(descending=True)
    return Y[ok][order], score[ok][order]


def _brute_marginals(Y: torch.Tensor, score: torch.Tensor, K: int) -> torch.Tensor:
    """p(y_t = j) (T, K): the probabilities of the paths that have tag j at t, summed."""
    p = torch.softmax(score, dim=0)
    return torch.einsum("n,ntk->tk", p, torch.nn.functional.one_hot(Y, K).double())


# --- brute force ---------------------------------------------------------------------------------
# T = 17 crosses the recursions' renormalisation step (every 16 positions).
@pytest.mark.parametrize(("K", "T", "seed"),
                         [(2, 1, 0), (3, 4, 1), (4, 3, 2), (2, 7, 3), (2, 17, 4)])
def test_log_z_marginals_viterbi_nbest_equal_enumeration(K: int, T: int, seed: int) -> None:
    crf = _crf(K, seed)
    e = _emissions(1, T, K, seed + 100)
    Y, scores = _brute(crf, e[0])
    assert len(Y) == K ** T
    log_z = crf.log_partition(e)
    torch.testing.assert_close(log_z[0], torch.logsumexp(scores, 0), atol=1e-10, rtol=0)
    with torch.no_grad():  # the forward pass that keeps nothing for a backward one
        torch.testing.assert_close(crf.log_partition(e), log_z, atol=1e-12, rtol=0)
    torch.testing.assert_close(crf.marginals(e)[0], _brute_marginals(Y, scores, K))

    best, score = crf.viterbi(e)
    assert best[0] == Y[0].tolist()  # the argmax over all K^T paths
    torch.testing.assert_close(score[0], scores[0], atol=1e-10, rtol=0)

    k = min(6, K ** T + 2)  # ask for more than exist when K^T is small
    nb, nb_scores = crf.nbest(e, k=k)
    n = min(k, K ** T)
    assert nb[0] == Y[:n].tolist()  # order included
    torch.testing.assert_close(nb_scores[0, :n], scores[:n])
    assert torch.isneginf(nb_scores[0, n:]).all()
    assert nb[0][0] == best[0]  # Viterbi = first of the n-best list

    # score() is the definition, the probabilities sum to 1, and the NLL is -log p.
    torch.testing.assert_close(crf.score(e.expand(len(Y), T, K), Y), scores)
    assert torch.exp(scores - log_z).sum().item() == pytest.approx(1.0, abs=1e-10)
    some = torch.arange(0, len(Y), max(1, len(Y) // 7))
    torch.testing.assert_close(crf(e.expand(len(some), T, K), Y[some], reduction="none"),
                               log_z - scores[some])


def test_nbest_with_k_one_is_viterbi_and_scores_are_path_scores() -> None:
    K, B, T = 5, 6, 37  # rows end on both sides of the recursions' renormalisation steps
    crf = _crf(K, 4)
    e = _emissions(B, T, K, 5)
    lengths = torch.tensor([37, 1, 16, 17, 2, 33])
    vit, vs = crf.viterbi(e, lengths=lengths)
    nb, ns = crf.nbest(e, k=1, lengths=lengths)
    assert [p[0] for p in nb] == vit
    torch.testing.assert_close(ns[:, 0], vs)
    nb, ns = crf.nbest(e, k=4, lengths=lengths)
    for r in range(4):  # each listed score is the score of the listed path
        tags = torch.zeros(B, T, dtype=torch.long)
        for b in range(B):
            tags[b, : lengths[b]] = torch.tensor(nb[b][r])
        torch.testing.assert_close(crf.score(e, tags, lengths=lengths), ns[:, r])
    assert (ns[:, :-1] >= ns[:, 1:]).all()  # best first
    assert all(len({tuple(p) for p in row}) == len(row) for row in nb)  # no repeats


def test_nll_is_log_z_minus_score_and_reductions() -> None:
    K, B, T = 4, 3, 5
    crf = _crf(K, 6)
    e = _emissions(B, T, K, 7)
    lengths = torch.tensor([5, 2, 3])
    tags = torch.randint(K, (B, T), generator=torch.Generator().manual_seed(8))
    nll = crf(e, tags, lengths=lengths, reduction="none")
    torch.testing.assert_close(nll, crf.log_partition(e, lengths=lengths)
                               - crf.score(e, tags, lengths=lengths))
    assert (nll > 0).all()
    torch.testing.assert_close(crf(e, tags, lengths=lengths), nll.mean())
    torch.testing.assert_close(crf(e, tags, lengths=lengths, reduction="sum"), nll.sum())
    torch.testing.assert_close(crf(e, tags, lengths=lengths, reduction="token_mean"),
                               nll.sum() / 10)


# --- padding -----------------------------------------------------------------------------------
def test_batched_with_padding_equals_one_at_a_time() -> None:
    K, T = 4, 8
    lengths = torch.tensor([8, 3, 1, 5, 8])
    B = len(lengths)
    crf = _crf(K, 9)
    e = _emissions(B, T, K, 10)
    mask = torch.arange(T) < lengths[:, None]
    e = e.masked_fill(~mask[..., None], torch.nan)  # padding is never read
    tags = torch.randint(K, (B, T), generator=torch.Generator().manual_seed(11))
    tags = tags.masked_fill(~mask, -100)
    e.requires_grad_(True)
    nll = crf(e, tags, mask, reduction="none")
    (grad,) = torch.autograd.grad(nll.sum(), e)
    assert torch.isfinite(grad).all() and (grad[~mask] == 0).all()
    marg = crf.marginals(e, mask)
    assert (marg[~mask] == 0).all()
    with torch.no_grad():  # the probability-space backward pass instead of the beta recursion
        torch.testing.assert_close(crf.marginals(e, mask), marg)
    torch.testing.assert_close(marg.sum(-1), mask.double())
    vit, vscore = crf.viterbi(e, mask)
    nb, nscore = crf.nbest(e, mask, k=3)
    for b in range(B):
        n = int(lengths[b])
        eb = e[b : b + 1, :n].detach().requires_grad_(True)
        one = crf(eb, tags[b : b + 1, :n], reduction="none")
        torch.testing.assert_close(one, nll[b : b + 1])
        torch.testing.assert_close(torch.autograd.grad(one.sum(), eb)[0][0], grad[b, :n])
        torch.testing.assert_close(crf.marginals(eb)[0], marg[b, :n])
        assert crf.viterbi(eb) == ([vit[b]], vscore[b : b + 1])
        nb1, ns1 = crf.nbest(eb, k=3)
        assert nb1[0] == nb[b]
        torch.testing.assert_close(ns1[0], nscore[b])


def test_mask_must_be_left_aligned_and_match_lengths() -> None:
    crf = _crf(3, 12)
    e = _emissions(2, 4, 3, 13)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.uint8)
    torch.testing.assert_close(crf.log_partition(e, mask),
                               crf.log_partition(e, lengths=torch.tensor([2, 4])))
    with pytest.raises(ValueError, match="left-aligned"):
        crf.log_partition(e, torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"length must be in \[1, T=4\]"):
        crf.log_partition(e, lengths=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="not both"):
        crf.log_partition(e, mask, lengths=torch.tensor([2, 4]))
    with pytest.raises(ValueError, match=r"emissions must be a float tensor \(B, T, 3\)"):
        crf.log_partition(e[..., :2])
    with pytest.raises(ValueError, match=r"tags must be in \[0, 3\)"):
        crf(e, torch.full((2, 4), 3))


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("constrained", [False, True])
def test_gradcheck_log_z_and_nll_float64(constrained: bool) -> None:
    K, B, T = 3, 3, 5
    crf = _crf(K, 14, bio_constraints(["O", "B-X", "I-X"]) if constrained else None)
    lengths = torch.tensor([5, 2, 4])
    e = _emissions(B, T, K, 15).requires_grad_(True)
    params = {n: getattr(crf, n).detach().clone().requires_grad_(True) for n in PARAMS}
    tags = torch.tensor([[1, 2, 0, 1, 2], [0, 1, 0, 0, 0], [1, 2, 2, 2, 0]])  # allowed in BIO

    class LogZ(torch.nn.Module):  # functional_call runs forward; this forward is log Z
        def __init__(self) -> None:
            super().__init__()
            self.crf = crf

        def forward(self, e: torch.Tensor) -> torch.Tensor:
            return self.crf.log_partition(e, lengths=lengths)

    log_z_module = LogZ()

    def log_z(e, s, tr, en):
        ps = {f"crf.{n}": p for n, p in zip(PARAMS, (s, tr, en), strict=True)}
        return functional_call(log_z_module, ps, (e,))

    def nll(e, s, tr, en):
        ps = dict(zip(PARAMS, (s, tr, en), strict=True))
        return functional_call(crf, ps, args=(e, tags),
                               kwargs={"lengths": lengths, "reduction": "none"})

    inputs = (e, *params.values())
    assert torch.autograd.gradcheck(log_z, inputs)
    assert torch.autograd.gradcheck(nll, inputs)


def test_gradient_of_log_z_is_the_marginals() -> None:
    crf = _crf(4, 17, bio_constraints(["O", "B-A", "I-A", "B-B"]))
    e = _emissions(2, 6, 4, 18).requires_grad_(True)
    lengths = torch.tensor([6, 3])
    (g,) = torch.autograd.grad(crf.log_partition(e, lengths=lengths).sum(), e)
    torch.testing.assert_close(g, crf.marginals(e, lengths=lengths))


# --- constraints ---------------------------------------------------------------------------------
def test_constraints_equal_brute_force_restricted_to_allowed_paths() -> None:
    K, T = 3, 5
    g = torch.Generator().manual_seed(19)
    cons = (torch.tensor([True, False, True]), torch.rand(K, K, generator=g) > 0.35,
            torch.tensor([False, True, True]))
    crf = _crf(K, 20, cons)
    e = _emissions(1, T, K, 21)
    Y, scores = _brute(crf, e[0])
    assert 0 < len(Y) < K ** T
    torch.testing.assert_close(crf.log_partition(e)[0], torch.logsumexp(scores, 0),
                               atol=1e-10, rtol=0)
    torch.testing.assert_close(crf.marginals(e)[0], _brute_marginals(Y, scores, K))
    assert crf.viterbi(e)[0][0] == Y[0].tolist()
    nb, ns = crf.nbest(e, k=len(Y) + 3)
    assert nb[0] == Y.tolist()  # every allowed path, best first, and no other
    torch.testing.assert_close(ns[0, :len(Y)], scores)
    assert torch.isneginf(ns[0, len(Y):]).all()
    # The gold score of a forbidden path is -inf, so its NLL is inf; allowed ones are finite.
    every = torch.cartesian_prod(*[torch.arange(K)] * T)
    forbidden = next(y for y in every.tolist() if y not in Y.tolist())
    assert torch.isposinf(crf(e, torch.tensor([forbidden]), reduction="none")).all()
    assert torch.isfinite(crf(e, Y[-1:]))
    # No NaN in the gradient, and none reaches a forbidden score.
    e.requires_grad_(True)
    crf(e, Y[3:4]).backward()
    assert torch.isfinite(e.grad).all()
    assert (crf.transitions.grad[~cons[1]] == 0).all()
    assert (crf.start_transitions.grad[~cons[0]] == 0).all()


def test_a_row_with_no_allowed_path_has_zero_probability_and_no_nan() -> None:
    # Tag 1 must start and tag 0 must end: a one-token sequence has no allowed tagging.
    crf = _crf(2, 26, (torch.tensor([False, True]), None, torch.tensor([True, False])))
    e = _emissions(2, 3, 2, 27).requires_grad_(True)
    lengths = torch.tensor([3, 1])
    log_z = crf.log_partition(e, lengths=lengths)
    assert torch.isfinite(log_z[0]) and torch.isneginf(log_z[1])
    log_z[0].backward()
    assert torch.isfinite(e.grad).all() and (e.grad[1] == 0).all()
    with torch.no_grad():
        fast = crf.marginals(e, lengths=lengths)
    torch.testing.assert_close(crf.marginals(e, lengths=lengths), fast)
    assert (fast[1] == 0).all() and (fast[0].sum(-1) - 1).abs().max() < 1e-12
    paths, scores = crf.viterbi(e, lengths=lengths)
    assert paths[0][0] == 1 and paths[0][-1] == 0 and torch.isneginf(scores[1])
    nb, _ = crf.nbest(e, k=3, lengths=lengths)
    assert len(nb[0]) == 2 and nb[1] == []  # 1-x-0 for x in {0, 1}; nothing for the short row


def _chunks_valid(tags: list[str], scheme: str) -> bool:
    """Independent check of a tag sequence: every I-X/E-X continues an open X chunk, and (in
    BIOES) every chunk opened by B-X is closed by E-X before anything else."""
    open_type = None
    for tag in tags:
        prefix, _, typ = tag.partition("-")
        if prefix in ("I", "E"):
            if open_type != typ:
                return False
        elif scheme == "BIOES" and open_type is not None:
            return False
        open_type = typ if prefix in ("B", "I") else None
    return scheme == "BIO" or open_type is None


@pytest.mark.parametrize(("scheme", "names"), [
    ("BIO", ["O", "B-NP", "I-NP", "B-VP", "I-VP"]),
    ("BIOES", ["O", "B-NP", "I-NP", "E-NP", "S-NP", "B-PP", "E-PP"]),
])
def test_bio_constraints_allow_exactly_the_well_formed_sequences(
        scheme: Literal["BIO", "BIOES"], names: list[str]) -> None:
    start, trans, end = bio_constraints(names, scheme)
    K, T = len(names), 4
    for y in itertools.product(range(K), repeat=T):
        steps = itertools.pairwise(y)
        allowed = bool(start[y[0]] and end[y[-1]] and all(trans[a, b] for a, b in steps))
        assert allowed == _chunks_valid([names[i] for i in y], scheme), [names[i] for i in y]


def test_bio_constraints_fix_an_ill_formed_viterbi_path() -> None:
    names = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
    ix = {n: i for i, n in enumerate(names)}
    start, trans, end = bio_constraints(names)
    assert not start[ix["I-NP"]] and start[ix["B-VP"]] and end.all()
    assert trans[ix["B-NP"], ix["I-NP"]] and trans[ix["I-NP"], ix["I-NP"]]
    assert not trans[ix["O"], ix["I-NP"]] and not trans[ix["B-NP"], ix["I-VP"]]
    # Emissions that prefer "I-NP I-NP O B-NP I-VP": two ill-formed chunks.
    want = ["I-NP", "I-NP", "O", "B-NP", "I-VP"]
    e = torch.full((1, 5, 5), -2.0, dtype=torch.float64)
    for t, n in enumerate(want):
        e[0, t, ix[n]] = 2.0
    e[0, 0, ix["B-NP"]] = 1.0
    e[0, 4, ix["I-NP"]] = 1.0
    free, cons = LinearChainCRF(5).double(), LinearChainCRF(5, start, trans, end).double()
    assert [names[i] for i in free.viterbi(e)[0][0]] == want
    got = [names[i] for i in cons.viterbi(e)[0][0]]
    assert got == ["B-NP", "I-NP", "O", "B-NP", "I-NP"]
    assert all(_chunks_valid([names[i] for i in p], "BIO") for p in cons.nbest(e, k=20)[0][0])
    assert cons.marginals(e)[0, 0, ix["I-NP"]] == 0
    with pytest.raises(ValueError, match="not a BIO tag"):
        bio_constraints(["O", "E-NP"])


# --- long sequences, dtype, state --------------------------------------------------------------
def test_long_sequence_stays_finite_and_precise_in_float32() -> None:
    K, T = 5, 2000
    crf = _crf(K, 22, dtype=torch.float32)
    ref = copy.deepcopy(crf).double()
    e = 5 * _emissions(2, T, K, 23, dtype=torch.float32)  # log Z ~ 1e4; exp overflows past 88
    lengths = torch.tensor([T, 1500])
    log_z = crf.log_partition(e, lengths=lengths)
    assert torch.isfinite(log_z).all() and (log_z > 5000).all()
    torch.testing.assert_close(log_z.double(), ref.log_partition(e.double(), lengths=lengths),
                               rtol=1e-5, atol=0)
    # The recursions subtract a running maximum, so float32 marginals keep ~6 digits even where
    # the raw scores are ~1e4 (whose float32 spacing is ~1e-3).
    marg = crf.marginals(e, lengths=lengths)
    torch.testing.assert_close(marg.double(), ref.marginals(e.double(), lengths=lengths),
                               atol=2e-5, rtol=0)
    paths, scores = crf.viterbi(e, lengths=lengths)
    assert [len(p) for p in paths] == [T, 1500]
    assert paths == ref.viterbi(e.double(), lengths=lengths)[0]
    assert (scores < log_z).all() and torch.isfinite(scores).all()
    tags = torch.zeros(2, T, dtype=torch.long)
    tags[0], tags[1, :1500] = torch.tensor(paths[0]), torch.tensor(paths[1])
    e.requires_grad_(True)
    nll = crf(e, tags, lengths=lengths, reduction="none")
    nll.sum().backward()
    assert torch.isfinite(nll).all() and (nll > 0).all()
    torch.testing.assert_close(e.grad.double(), ref.marginals(e.double(), lengths=lengths)
                               - torch.nn.functional.one_hot(tags, K) * (marg.sum(-1, True) > 0),
                               atol=2e-5, rtol=0)
    assert torch.isfinite(crf.transitions.grad).all()


def test_fresh_layer_is_deterministic_and_constraints_travel_in_the_state_dict() -> None:
    cons = bio_constraints(["O", "B-X", "I-X"])
    a = LinearChainCRF(3, *cons)
    assert all((getattr(a, n) == 0).all() for n in PARAMS)
    b = LinearChainCRF(3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.allowed_trans, cons[1]) and torch.equal(b.allowed_start, cons[0])
    with pytest.raises(ValueError, match=r"allowed_trans must be a bool tensor of shape \(3, 3\)"):
        LinearChainCRF(3, allowed_trans=torch.ones(3, 2, dtype=torch.bool))


# --- reference implementation ---------------------------------------------------------------------
def test_agrees_with_pytorch_crf() -> None:
    torchcrf = pytest.importorskip("torchcrf")
    K, B, T = 6, 5, 40
    crf = _crf(K, 24, dtype=torch.float32)
    ref = torchcrf.CRF(K, batch_first=True)
    ref.load_state_dict(crf.state_dict(), strict=False)  # the same parameter names and layout
    g = torch.Generator().manual_seed(25)
    e = torch.randn(B, T, K, generator=g, requires_grad=True)
    tags = torch.randint(K, (B, T), generator=g)
    lengths = torch.tensor([40, 17, 1, 33, 4])
    mask = torch.arange(T) < lengths[:, None]
    # pytorch-crf returns the log-likelihood (reduction "sum" by default); this is its negation.
    for red in ("none", "sum", "mean", "token_mean"):
        torch.testing.assert_close(crf(e, tags, mask, reduction=red),
                                   -ref(e, tags, mask, reduction=red))
    ours = torch.autograd.grad(crf(e, tags, mask), [e, *(getattr(crf, n) for n in PARAMS)])
    theirs = torch.autograd.grad(-ref(e, tags, mask, reduction="mean"),
                                 [e, *(getattr(ref, n) for n in PARAMS)])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert crf.viterbi(e, mask)[0] == ref.decode(e, mask)
