"""Tests of reid_nb.features against dense references: ports of the original k-reciprocal programs.

`dense_jaccard_reference` follows Cluster-Contrast's `clustercontrast/utils/faiss_rerank.py::compute_jaccard_distance`
(CPU branch: faiss IndexFlatL2 searched for k1 results, per-row Python loops, float32). `dense_rerank_reference`
follows torchreid's `torchreid/utils/rerank.py::re_ranking` (= zhunzhong07/person-re-ranking
`python-version/re_ranking_ranklist.py`, Houjing Huang's distance-matrix version, float32). Both are re-typed from
the originals step by step, kept deliberately plain (O(N^2) memory), and used by benchmarks/bench_neighbours.py.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_nb.core import BadInputError
from reid_nb.features import (as_features, sq_norms, extract_features, jaccard_distance, k_reciprocal_rerank, knn,
                              pairwise_distance, row_topk)


# ---------------------------------------------------------------- dense references (ports of the original code)
def _k_reciprocal(initial_rank, i, k):
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def _expansion(nn_k1, nn_half, i):
    members = nn_k1[i]
    expanded = members
    for candidate in members:
        cand_set = nn_half[candidate]
        if len(np.intersect1d(cand_set, members)) > 2 / 3 * len(cand_set):
            expanded = np.append(expanded, cand_set)
    return np.unique(expanded)


def _shared_mass_rows(V, rows):
    """The original's inverted-index loop: temp_min[j] = sum_l min(V[i, l], V[j, l]) for each i in rows."""
    inv_index = [np.where(V[:, l] != 0)[0] for l in range(V.shape[1])]
    out = np.zeros((len(rows), V.shape[0]), dtype=np.float32)
    for r, i in enumerate(rows):
        temp_min = np.zeros((1, V.shape[0]), dtype=np.float32)
        nonzero = np.where(V[i, :] != 0)[0]
        images = [inv_index[l] for l in nonzero]
        for j, l in enumerate(nonzero):
            temp_min[0, images[j]] += np.minimum(V[i, l], V[images[j], l])
        out[r] = temp_min[0]
    return out


def dense_jaccard_reference(features, k1=20, k2=6, initial_rank=None):
    """Cluster-Contrast compute_jaccard_distance (search_option=3, float32), returning the dense (N, N) matrix.
    `initial_rank` (ours) replaces the faiss search: near-ties (distances equal to float precision) may be ordered
    differently by two exact searches, and the result is sensitive to that order."""
    import faiss
    feats = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    n = len(feats)
    if initial_rank is None:
        index = faiss.IndexFlatL2(feats.shape[1])
        index.add(feats)
        _, initial_rank = index.search(feats, k1)
    nn_k1 = [_k_reciprocal(initial_rank, i, k1) for i in range(n)]
    nn_half = [_k_reciprocal(initial_rank, i, int(np.around(k1 / 2))) for i in range(n)]
    V = np.zeros((n, n), dtype=np.float32)
    t = torch.from_numpy(feats)
    for i in range(n):
        exp_index = _expansion(nn_k1, nn_half, i)
        dist = 2 - 2 * torch.mm(t[i].unsqueeze(0), t[exp_index].t())
        V[i, exp_index] = F.softmax(-dist, dim=1).view(-1).numpy()
    if k2 != 1:
        V = np.stack([np.mean(V[initial_rank[i, :k2], :], axis=0) for i in range(n)]).astype(np.float32)
    temp_min = _shared_mass_rows(V, range(n))
    jaccard = 1 - temp_min / (2 - temp_min)
    jaccard[jaccard < 0] = 0.0
    return jaccard


def dense_rerank_reference(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3, initial_rank=None):
    """torchreid re_ranking: distance matrices in, (Q, G) re-ranked distance out (`initial_rank`: as above)."""
    original = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                               np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1.0 * original / np.max(original, axis=0))
    V = np.zeros_like(original).astype(np.float32)
    if initial_rank is None:
        initial_rank = np.argsort(original).astype(np.int32)
    nq, n = q_g_dist.shape[0], original.shape[0]
    nn_k1 = [_k_reciprocal(initial_rank, i, k1) for i in range(n)]
    nn_half = [_k_reciprocal(initial_rank, i, int(np.around(k1 / 2.0))) for i in range(n)]
    for i in range(n):
        exp_index = _expansion(nn_k1, nn_half, i)
        weight = np.exp(-original[i, exp_index])
        V[i, exp_index] = 1.0 * weight / np.sum(weight)
    original = original[:nq, ]
    if k2 != 1:
        V = np.stack([np.mean(V[initial_rank[i, :k2], :], axis=0) for i in range(n)]).astype(np.float32)
    temp_min = _shared_mass_rows(V, range(nq))
    jaccard = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:nq, nq:]


# ---------------------------------------------------------------- data
def clustered(n_ids, per_id, dim, spread, seed, dtype=np.float64):
    """Unit vectors around n_ids random centres (a re-ID-like feature set without ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    x = np.repeat(centres, per_id, 0) + spread * rng.standard_normal((n_ids * per_id, dim))
    rng.shuffle(x)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def dense_from_sparse(S):
    c = S.tocoo()
    out = np.ones(S.shape)
    out[c.row, c.col] = c.data
    return out


# ---------------------------------------------------------------- knn
@pytest.mark.parametrize("block", [7, 64])
def test_knn_self_matches_brute_force(block):
    x = clustered(6, 8, 12, 0.6, 0)
    full = ((x[:, None] - x[None]) ** 2).sum(2)
    d, i = knn(x, 10, block=block)
    assert (i == np.argsort(full, 1)[:, :10]).all()
    assert np.allclose(d, np.sort(full, 1)[:, :10], atol=1e-12)
    assert (i[:, 0] == np.arange(len(x))).all() and (d[:, 0] == 0).all()


@pytest.mark.parametrize("shape,k,groups", [((5, 1003), 20, 8), ((4, 800), 100, 8), ((3, 97), 5, 4), ((2, 50), 7, 1)])
def test_row_topk_values_equal_a_full_sort_even_with_ties(shape, k, groups):
    g = torch.Generator().manual_seed(shape[1])
    for d in (torch.rand(shape, generator=g), torch.randint(0, 30, shape, generator=g).double()):  # 30 values: ties
        v, i = row_topk(d, k, groups)
        assert torch.equal(v, d.sort(1).values[:, :k])  # the k smallest, ascending
        assert torch.equal(d.gather(1, i), v) and all(len(set(r.tolist())) == k for r in i)  # distinct columns


def test_knn_grouped_top_k_matches_brute_force_on_wide_rows():
    x, q = clustered(10, 60, 8, 0.6, 3), clustered(3, 5, 8, 0.6, 5)  # 600 columns: 75 per group, more than k
    for queries, ref in ((None, x), (q, q)):
        full = ((ref[:, None] - x[None]) ** 2).sum(2)
        d, i = knn(x, 12, queries=queries)
        assert (i == np.argsort(full, 1, kind="stable")[:, :12]).all() and np.allclose(d, np.sort(full, 1)[:, :12])


def test_knn_self_first_even_with_duplicates_and_small_slabs(monkeypatch):
    x = np.repeat(clustered(4, 3, 6, 0.5, 4), 2, axis=0)  # every point twice: distance 0 to its twin
    d, i = knn(x, 3, block=5)
    assert (i[:, 0] == np.arange(len(x))).all() and (d[:, 0] == 0).all() and np.allclose(d[:, 1], 0, atol=1e-12)
    assert (i[:, 1] == np.arange(len(x)) ^ 1).all()  # the twin comes second
    full = ((x[:, None] - x[None]) ** 2).sum(2)
    assert np.allclose(d, np.sort(full, 1)[:, :3], atol=1e-12)


def test_knn_queries_cosine_and_faiss_agree():
    x, q = clustered(5, 6, 10, 0.5, 1), clustered(2, 4, 10, 0.5, 2)
    brute = np.argsort(((q[:, None] - x[None]) ** 2).sum(2), 1)[:, :7]
    d, i = knn(x, 7, queries=q, block=9)
    assert (i == brute).all()
    df, i_f = knn(x.astype(np.float32), 7, queries=q.astype(np.float32), backend="faiss")
    assert (i_f == brute).all() and np.allclose(df, d, atol=1e-5)
    dc, ic = knn(x * 3.0, 7, queries=q, metric="cosine")  # scale does not matter for cosine
    assert (ic == brute).all() and np.allclose(dc, 1 - np.sort(q @ x.T, 1)[:, ::-1][:, :7], atol=1e-12)


def test_knn_bad_input():
    x = clustered(2, 3, 4, 0.3, 0)
    for bad in [dict(k=7), dict(k=0), dict(k=2, metric="manhattan"), dict(k=2, backend="annoy"),
                dict(k=2, queries=np.ones((2, 5)))]:
        with pytest.raises(BadInputError):
            knn(x, **bad)
    x[2, 1] = np.inf
    with pytest.raises(BadInputError, match="row 2"):
        knn(x, 2)
    with pytest.raises(BadInputError, match="non-empty"):
        knn(np.zeros((0, 4)), 1)


def test_pairwise_distance():
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(pairwise_distance(x, y), torch.cdist(x, y) ** 2)
    assert torch.allclose(pairwise_distance(x, y, "cosine"), 1 - F.cosine_similarity(x[:, None], y[None], dim=2))


# ---------------------------------------------------------------- Jaccard distance
@pytest.mark.parametrize("k1,k2", [(20, 6), (5, 1), (9, 3), (30, 6)])
def test_jaccard_matches_cluster_contrast(k1, k2):
    x = clustered(8, 10, 16, 0.7, k1 + k2, dtype=np.float32)
    ref = dense_jaccard_reference(x, k1, k2)
    J = jaccard_distance(x, k1=k1, k2=k2, block=32)
    mine = dense_from_sparse(J)
    stored = np.zeros(J.shape, bool)
    c = J.tocoo()
    stored[c.row, c.col] = True
    assert (stored == (ref < 1)).all()  # the same pairs share k-reciprocal neighbours
    assert np.abs(mine - ref).max() < 1e-6


def test_jaccard_budget_does_not_change_result():
    x = clustered(5, 8, 8, 0.5, 3)
    a, b = jaccard_distance(x, 6, 3), jaccard_distance(x, 6, 3, budget=50)
    assert (a != b).nnz == 0 and a.nnz == b.nnz and np.allclose(a.diagonal(), 0)


def test_jaccard_normalises_only_non_unit_features():
    x = clustered(5, 8, 8, 0.5, 6)
    a, b = jaccard_distance(x, 6, 3), jaccard_distance(x * 4.0, 6, 3)
    assert np.abs(dense_from_sparse(a) - dense_from_sparse(b)).max() < 1e-6


def test_jaccard_memory_is_sparse():
    x = clustered(40, 5, 16, 0.3, 4)  # 200 points in tight groups: few pairs share neighbours
    J = jaccard_distance(x, 5, 2)
    assert J.nnz < 0.1 * J.shape[0] ** 2


def test_jaccard_bad_input():
    x = clustered(2, 4, 4, 0.3, 0)
    with pytest.raises(BadInputError, match="k1"):
        jaccard_distance(x, k1=9)
    with pytest.raises(BadInputError, match="k2"):
        jaccard_distance(x, k1=3, k2=4)
    with pytest.raises(BadInputError, match="NaN"):
        jaccard_distance(np.full((3, 2), np.nan), k1=2, k2=1)


# ---------------------------------------------------------------- re-ranking
def _distances(q, g, power):
    e = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(2))
    # the matrix version squares what it is given: Euclidean -> power 2, squared Euclidean -> power 4
    return [m ** (power // 2) for m in (e(q, g), e(q, q), e(g, g))]


@pytest.mark.parametrize("k1,k2,lam,power", [(20, 6, 0.3, 2), (20, 6, 0.3, 4), (7, 1, 0.5, 2), (5, 3, 0.0, 4)])
def test_rerank_matches_torchreid(k1, k2, lam, power):
    x = clustered(9, 8, 16, 0.8, k1 * 10 + k2)
    q, g = x[:14], x[14:]
    ref = dense_rerank_reference(*_distances(q, g, power), k1=k1, k2=k2, lambda_value=lam)
    mine = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam, power=power, block=16)
    assert mine.shape == ref.shape == (14, 58)
    assert np.abs(mine - ref).max() < 1e-6


def test_rerank_unnormalised_float32_features():
    x = clustered(6, 7, 10, 0.6, 5) * np.random.default_rng(0).uniform(0.5, 3, (42, 1))
    q, g = x[:6], x[6:]
    ref = dense_rerank_reference(*_distances(q, g, 2), k1=10, k2=4)
    mine = k_reciprocal_rerank(torch.tensor(q, dtype=torch.float32), g.astype(np.float32), k1=10, k2=4, budget=64)
    assert np.abs(mine - ref).max() < 1e-5  # float32 features: float32 distances


def test_rerank_bad_input():
    q, g = clustered(2, 2, 4, 0.3, 0), clustered(2, 3, 4, 0.3, 1)
    for kw in [dict(k1=10), dict(k2=11), dict(power=3), dict(lambda_value=1.5)]:
        with pytest.raises(BadInputError):
            k_reciprocal_rerank(q, g, **{"k1": 3, "k2": 2, **kw})
    with pytest.raises(BadInputError, match="dims"):
        k_reciprocal_rerank(q, g[:, :3], k1=3, k2=2)
    with pytest.raises(BadInputError, match="gf"):
        k_reciprocal_rerank(q, g[:0], k1=1, k2=1)


@pytest.mark.parametrize("value", [0.0, 1.7])
def test_rerank_refuses_identical_features(value):
    # all distances 0: the originals divide 0 by 0 and return NaN everywhere; we refuse, naming the fields
    with pytest.raises(BadInputError, match="qf, gf.*identical"):
        k_reciprocal_rerank(np.full((3, 5), value), np.full((8, 5), value), k1=3, k2=2)
    g = np.full((8, 5), value)
    g[4, 0] += 1.0  # one image differs: a ranking exists, and the result is finite
    assert np.isfinite(k_reciprocal_rerank(np.full((3, 5), value), g, k1=3, k2=2)).all()


# ---------------------------------------------------------------- extraction
class FakeBank:
    def __init__(self, n, seed=0):
        self.x = torch.randn(n, 3, 4, 2, generator=torch.Generator().manual_seed(seed))
        self.calls = []

    def __len__(self):
        return len(self.x)

    def batch(self, idx, device="cpu"):
        self.calls.append(np.asarray(idx).tolist())
        return self.x[torch.as_tensor(idx)].to(device)


class Probe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(24, 5)
        self.drop = torch.nn.Dropout(0.9)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.drop(self.lin(x.flatten(1)))


def test_extract_features_eval_mode_no_grad_and_order():
    bank, model = FakeBank(7), Probe()
    feats = extract_features(model, bank, "cpu", batch_size=3)
    assert bank.calls == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(s == (False, False) for s in model.seen) and model.training  # mode restored
    assert feats.dtype == torch.float32 and not feats.requires_grad
    with torch.no_grad():
        assert torch.allclose(feats, model.lin(bank.x.flatten(1)))


def test_extract_features_bad_input():
    with pytest.raises(BadInputError, match="no images"):
        extract_features(Probe(), FakeBank(0), "cpu")
    with pytest.raises(BadInputError, match="expected"):
        extract_features(torch.nn.Identity(), FakeBank(2), "cpu")
    nan_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24, 2))
    torch.nn.init.constant_(nan_model[1].weight, float("nan"))
    with pytest.raises(BadInputError, match="NaN"):
        extract_features(nan_model, FakeBank(2), "cpu")
    with pytest.raises(BadInputError, match="batch_size"):
        extract_features(Probe(), FakeBank(2), "cpu", batch_size=0)


def test_as_features_promotes_and_checks():
    assert as_features(np.ones((2, 2), np.int64)).dtype == torch.float32
    assert as_features(torch.ones(2, 2, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(BadInputError, match="shape"):
        as_features(np.ones(3))


def test_sq_norms_match_float64_and_handle_zero_rows():
    x = torch.randn(300, 64) * torch.rand(300, 1) * 10
    x[7] = 0
    ref = (x.double() ** 2).sum(1)
    got = sq_norms(x)
    assert got.dtype == torch.float32 and got[7] == 0
    assert torch.allclose(got.double(), ref, rtol=1e-6, atol=0)
