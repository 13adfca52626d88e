"""Smoke test of the peers benchmark (bench.peers) on a tiny synthetic embedding file."""
import numpy as np
import pytest

from bench import detection, peers
from bench.embeddings import make_cell


def _embeddings(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 40)
    feats = (np.eye(10, 16)[labels] * 4 + rng.normal(size=(400, 16))).astype(np.float32)
    human = labels.copy()
    human[::7] = (human[::7] + 3) % 10
    np.savez(tmp_path / "cifar10.npz", features=feats, labels=labels, encoder_accuracy=np.float32(1.0),
             human_worst=human, human_aggre=labels, human_random1=human)
    return tmp_path


def test_cells_are_balanced_disjoint_and_seeded(tmp_path):
    emb = dict(np.load(_embeddings(tmp_path) / "cifar10.npz"))
    a = make_cell(emb, "cifar10", "sym:0.5", 1, size=200, test_size=100)
    b = make_cell(emb, "cifar10", "sym:0.5", 1, size=200, test_size=100)
    assert np.bincount(a.clean).tolist() == [20] * 10 and np.array_equal(a.noisy, b.noisy)
    assert 0.3 < (~a.is_clean).mean() < 0.6
    human = make_cell(emb, "cifar10", "human:worst", 2, size=200, test_size=100)
    assert (~human.is_clean).any() and human.test_features.shape == (100, 16)


def test_peers_without_cleanlab_parts(tmp_path, capsys):
    folder = _embeddings(tmp_path)
    out = detection.main(["--peers", "--embeddings", str(folder), "--cells", "cifar10 human:worst",
                          "cifar10 pairflip:0.3", "--seeds", "1", "--size", "200", "--test_size", "100",
                          "--detectors", "fine:score=margin", "fine:score=lda", "knn", "loss-gmm", "small-loss",
                          "--target", "fine:score=lda", "--csv", str(tmp_path / "p.csv")])
    rows = {(r["cell"], r["detector"]): r for r in out}
    lda = rows[("cifar10 pairflip:0.3", "fine:score=lda")]
    assert lda["auroc"] > 0.9 and 0 <= lda["f1"] <= 1
    assert (tmp_path / "p.csv").is_file() and "targets" in capsys.readouterr().out


def test_peers_cleanlab_and_end_to_end(tmp_path):
    pytest.importorskip("cleanlab")
    folder = _embeddings(tmp_path)
    out = peers.main(["--embeddings", str(folder), "--cells", "cifar10 sym:0.5", "--seeds", "1", "--size", "200",
                      "--test_size", "100", "--detectors", "cleanlab", "fine:score=lda", "--e2e", "fine:score=lda"])
    names = {r["detector"] for r in out}
    assert {"cleanlab", "logreg", "CleanLearning", "logreg on fine:score=lda"} <= names


def test_peer_detectors_are_the_registry_selectors_with_their_options(tmp_path):
    emb = dict(np.load(_embeddings(tmp_path) / "cifar10.npz"))
    cell = make_cell(emb, "cifar10", "sym:0.5", 1, size=200, test_size=100)
    knn = peers.run_detector("knn:knn_k=5,knn_rounds=2", cell)
    lda = peers.run_detector("fine:score=lda,lda_refine=0,lda_decision=mixture", cell)
    loss = peers.run_detector("small-loss", cell)
    assert knn["trainings"] == 0 and lda["trainings"] == 0 and loss["trainings"] == 1
    assert knn["clean"].shape == lda["clean"].shape == (200,)
    assert abs(int(loss["clean"].sum()) - 200 * cell.is_clean.mean()) <= 10  # the oracle rate, rounded per class
    with pytest.raises(peers.UserError, match="knn takes no option score"):
        peers.run_detector("knn:score=lda", cell)
    with pytest.raises(peers.UserError, match="unknown detector"):
        peers.run_detector("lda:refine=0", cell)


def test_peers_on_the_warmup_network(tmp_path, capsys):
    """The warm-up source: 2 epochs of the standard trainer on noisy digits, detectors on its network's outputs."""
    args = ["--features", "warmup", "--cells", "digits sym:0.5", "--seeds", "1", "--warmup_epochs", "2",
            "--workdir", str(tmp_path), "--csv", str(tmp_path / "w.csv")]
    out = peers.main([*args, "--detectors", "fine:score=lda", "knn", "small-loss"])
    rows = {(r["source"], r["detector"]): r for r in out}
    assert set(rows) == {("warmup2", "fine:score=lda"), ("warmup2", "knn"), ("warmup2", "small-loss")}
    assert rows[("warmup2", "fine:score=lda")]["auroc"] > 0.9 and rows[("warmup2", "small-loss")]["trainings"] == 0
    text = (tmp_path / "w.csv").read_text()
    assert text.splitlines()[0].split(",").count("source") == 1 and text.count("warmup2") == 3
    assert "warmup2" in capsys.readouterr().out
    again = peers.main([*args, "--detectors", "fine:score=lda"])
    assert again[0]["auroc"] == rows[("warmup2", "fine:score=lda")]["auroc"]  # deterministic
    pytest.importorskip("cleanlab")
    both = peers.main([*args, "--detectors", "cleanlab", "fine:score=lda"])
    assert {r["detector"] for r in both} == {"cleanlab", "cleanlab:in-sample", "fine:score=lda"}
    assert {r["detector"]: r["trainings"] for r in both}["cleanlab:in-sample"] == 0
