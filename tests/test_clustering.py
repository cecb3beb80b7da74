"""reid_nb.clustering on separable data, hand-built sparse matrices and small-cluster rules."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from reid_nb.clustering import (agglomerative_labels, dbscan_labels, dense_distance, edge_mask, infomap_labels,
                                relabel_small, silhouette)
from reid_nb.core import BadInputError


def knn_lists(X, k):
    """Brute-force cosine kNN lists (self first): indices and distances 1 - cos."""
    sim = X @ X.T; idx = np.argsort(-sim, 1, kind="stable")[:, :k]
    return idx, 1 - np.take_along_axis(sim, idx, 1)


def blobs(rng, sizes, dim=8, noise=0.05):
    """Unit vectors around orthogonal centres: one blob per entry of `sizes`."""
    X = np.concatenate([np.eye(dim)[g] + noise * rng.standard_normal((n, dim)) for g, n in enumerate(sizes)])
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.repeat(np.arange(len(sizes)), sizes)


def test_dbscan_dense_and_sparse_on_separable_data():
    rng = np.random.default_rng(5)
    X, gt = blobs(rng, [10, 12, 8])
    X = np.vstack([X, -np.ones((1, X.shape[1])) / np.sqrt(X.shape[1])])  # a loner
    D = np.clip(1 - X @ X.T, 0, 1)
    lab = dbscan_labels(D, eps=0.3, min_samples=4)
    assert lab[-1] == -1 and len(set(lab[:-1])) == 3
    assert all(len(set(lab[:-1][gt == g])) == 1 for g in range(3))
    S = sp.csr_matrix(np.where(D < 0.3, D, 0)); S.setdiag(0.0)
    assert (dbscan_labels(S, eps=0.3, min_samples=4) == lab).all()
    with pytest.raises(BadInputError, match="eps"): dbscan_labels(S, eps=1.0)
    with pytest.raises(BadInputError, match="square"): dbscan_labels(np.zeros((3, 4)))


def test_agglomerative_on_separable_data_labels_everything():
    rng = np.random.default_rng(6)
    X, gt = blobs(rng, [7, 9, 5, 6])
    lab = agglomerative_labels(np.clip(1 - X @ X.T, 0, 1), n_clusters=4)
    assert (lab >= 0).all() and len(set(lab)) == 4
    assert all(len(set(lab[gt == g])) == 1 for g in range(4))
    assert len(set(agglomerative_labels(np.zeros((3, 3)), n_clusters=10))) == 3  # clipped to N


def test_dense_distance_fills_missing_pairs_with_one():
    S = sp.csr_matrix(([0.2, 0.2, 0.0], ([0, 1, 2], [1, 0, 1])), shape=(3, 3))
    assert np.array_equal(dense_distance(S), [[0, 0.2, 1], [0.2, 0, 1], [1, 0.0, 0]])


def test_infomap_on_separable_data_and_small_clusters():
    rng = np.random.default_rng(7)
    X, gt = blobs(rng, [9, 11, 10, 4, 1])
    idx, dist = knn_lists(X, 15)
    lab = infomap_labels(idx, dist, min_sim=0.5, max_outlier_size=4)
    for g in range(3):
        assert len(set(lab[gt == g])) == 1 and lab[gt == g][0] >= 0
    assert len({lab[gt == g][0] for g in range(3)}) == 3
    assert (lab[gt >= 3] == -1).all()  # a group of 4 (<= 4) and a loner
    assert list(infomap_labels(idx, dist, max_outlier_size=3)[gt == 3]) == [3] * 4
    with pytest.raises(BadInputError): infomap_labels(idx, dist[:, :3])


def test_relabel_small():
    assert list(relabel_small([5, 5, 9, 9, 9, -1, 7], 1)) == [0, 0, 1, 1, 1, -1, -1]


def test_silhouette_ignores_outliers():
    rng = np.random.default_rng(8)
    X, gt = blobs(rng, [6, 6])
    D = np.clip(1 - X @ X.T, 0, 1)
    D2 = np.pad(D, ((0, 1), (0, 1)), constant_values=1.0); D2[-1, -1] = 0
    assert silhouette(D2, np.r_[gt, -1]) == pytest.approx(silhouette(D, gt))
    assert math.isnan(silhouette(D, np.zeros(12, int)))


def test_edge_mask_drops_self_far_and_missing_neighbours():
    idx = np.array([[0, 1, 2], [1, 0, -1]])
    dist = np.array([[0.0, 0.3, 0.6], [0.0, 0.5, 0.1]])  # cos 0.4 < min_sim; -1: no neighbour
    assert edge_mask(idx, dist, 0.5).tolist() == [[False, True, False], [False, True, False]]
