"""SimiFeat k-NN detector (fine.selection.knn) against scikit-learn's neighbours and on data with a known answer."""
import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from fine.selection.knn import knn_neighbours, knn_select, neighbour_votes


def _clusters(n_per: int = 60, num_classes: int = 3, flips: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(num_classes, 8) * 10
    clean = np.repeat(np.arange(num_classes), n_per)
    feats = centres[clean] + rng.normal(size=(len(clean), 8))
    noisy = clean.copy()
    flipped = rng.choice(len(clean), size=flips, replace=False)
    noisy[flipped] = (clean[flipped] + 1) % num_classes
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(noisy), clean, flipped


def test_neighbours_match_sklearn_cosine():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, 6))
    got = knn_neighbours(torch.tensor(feats), 7).numpy()
    ref = NearestNeighbors(n_neighbors=8, metric="cosine").fit(feats).kneighbors(feats, return_distance=False)
    # the reference lists the sample itself first (distance 0)
    assert (ref[:, 0] == np.arange(300)).all()
    assert (np.sort(got, 1) == np.sort(ref[:, 1:], 1)).all()


def test_votes_are_label_counts():
    neighbours = torch.tensor([[1, 2], [0, 2], [0, 1]])
    labels = torch.tensor([0, 1, 1])
    assert neighbour_votes(neighbours, labels, 2).tolist() == [[0, 2], [1, 1], [1, 1]]


@pytest.mark.parametrize("decision", ["vote", "rank"])
def test_flags_exactly_the_flipped_labels_of_separated_clusters(decision):
    feats, noisy, clean, flipped = _clusters()
    sel = knn_select(feats, noisy, 3, k=10, rounds=3, decision=decision)
    assert sorted((~sel.clean_mask).nonzero().squeeze(1).tolist()) == sorted(flipped.tolist())
    assert sel.scores[torch.tensor(flipped)].max() < sel.scores[sel.clean_mask].min()


def test_vote_matches_a_numpy_majority_reference():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(200, 5))
    labels = rng.integers(0, 4, size=200)
    ref_nn = NearestNeighbors(n_neighbors=6, metric="cosine").fit(feats).kneighbors(feats, return_distance=False)
    counts = np.stack([np.bincount(labels[row[1:]], minlength=4) for row in ref_nn])
    expected = counts[np.arange(200), labels] >= counts.max(1)
    sel = knn_select(torch.tensor(feats), torch.tensor(labels), 4, k=5, rounds=1)
    assert (sel.clean_mask.numpy() == expected).all()


def test_rejects_bad_options():
    feats, noisy, _, _ = _clusters()
    with pytest.raises(ValueError, match="decision"):
        knn_select(feats, noisy, 3, decision="x")
    with pytest.raises(ValueError, match="k must"):
        knn_select(feats, noisy, 3, k=len(noisy))


def test_knn_is_a_registered_selector_of_engine_detect(tmp_path):
    from engine import detect
    from fine.selection import REGISTRY
    from tests.test_detect import synthetic
    assert REGISTRY["knn"].label == "SimiFeat k-NN" and REGISTRY["knn"].needs == ("features",)
    p = synthetic(tmp_path)["paths"]
    summary = detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out",
                           str(tmp_path / "out"), "--clean_labels", str(p["clean"]), "--selector", "knn",
                           "--knn_k", "5", "--knn_rounds", "3"])
    assert summary["selector"] == "knn"
    assert summary["options"] == {"knn_k": 5, "knn_rounds": 3, "knn_keep": 0.8, "knn_decision": "vote"}
    assert summary["detection"]["precision"] > 0.9 and summary["detection"]["auroc"] > 0.9
    with pytest.raises(detect.UserError, match="--knn_keep"):
        detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out", str(tmp_path / "o2"),
                     "--selector", "knn", "--knn_keep", "0"])


def test_knn_selects_in_the_trainer(tmp_path):
    from dynamic_selection import train as ds
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "runs"),
        "--device", "cpu", "--epochs", "3", "--batch_size", "128", "--method", "fine", "--selector", "knn",
        "--knn_k", "5", "--warmup", "1", "--every", "1"]))
    assert summary["label"] == "FINE (SimiFeat k-NN selector)" and 0 < summary["selection"]["precision"] <= 1
    from engine import detect  # a run's own selector and options, without flags
    found = detect.main(["--run", summary["run_dir"], "--out", str(tmp_path / "detect")])
    assert found["selector"] == "knn" and found["options"]["knn_k"] == 5
