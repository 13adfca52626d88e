"""Label noise: realised rates and transitions per kind, determinism, saved label files (a read-only data folder's in
the user cache), error messages."""
import json
from pathlib import Path

import numpy as np
import pytest

from data_loader.noise import (
    asym_class_map,
    label_cache_root,
    load_or_make_noisy_labels,
    make_noisy_labels,
    noise_summary,
    noisy_label_path,
)
from fine.errors import UserError
from tests.fixtures import deny_writes_below


def balanced_labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def transition_counts(clean: np.ndarray, noisy: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (clean, noisy), 1)
    return counts


def test_sym_relabels_exactly_round_rN_uniformly_over_all_classes():
    clean = balanced_labels(10_000, 10)
    rate = 0.6
    noisy = make_noisy_labels(clean, "sym", rate, num_classes=10, seed=3)
    # Regenerate the drawn subset with the same generator calls, then check it against the labels.
    rng = np.random.default_rng(3)
    chosen = rng.choice(len(clean), size=round(rate * len(clean)), replace=False)
    assert len(chosen) == 6000
    untouched = np.setdiff1d(np.arange(len(clean)), chosen)
    assert np.array_equal(noisy[untouched], clean[untouched])
    assert np.array_equal(noisy[chosen], rng.integers(0, 10, size=len(chosen)))
    # About r (K-1)/K of all samples change; the chosen ones land uniformly (true class included).
    assert abs((noisy != clean).mean() - rate * 0.9) < 0.015
    hist = np.bincount(noisy[chosen], minlength=10) / len(chosen)
    assert np.abs(hist - 0.1).max() < 0.02
    assert abs((noisy[chosen] == clean[chosen]).mean() - 0.1) < 0.015


@pytest.mark.parametrize("dataset,k", [("cifar10", 10), ("digits", 10), ("fashion_mnist", 10), ("cifar100", 100)])
def test_asym_flips_exactly_round_r_nc_per_source_class_to_its_mapped_class(dataset, k):
    clean = np.random.default_rng(1).integers(0, k, size=50 * k + 7)  # unequal class sizes
    rate = 0.4
    noisy = make_noisy_labels(clean, "asym", rate, num_classes=k, seed=0, dataset=dataset)
    target = asym_class_map(dataset, k)
    counts = transition_counts(clean, noisy, k)
    n_c = np.bincount(clean, minlength=k)
    for c in range(k):
        if target[c] == c:
            assert counts[c, c] == n_c[c]
        else:
            assert counts[c, target[c]] == round(rate * n_c[c])
            assert counts[c, c] == n_c[c] - round(rate * n_c[c])
    assert counts.sum() - np.trace(counts) == sum(round(rate * n_c[c]) for c in range(k) if target[c] != c)


def test_asym_maps():
    assert dict(enumerate(asym_class_map("cifar10", 10))) == {0: 0, 1: 1, 2: 0, 3: 5, 4: 7, 5: 3, 6: 6, 7: 7, 8: 8,
                                                              9: 1}
    assert dict(enumerate(asym_class_map("digits", 10))) == {0: 0, 1: 7, 2: 2, 3: 8, 4: 4, 5: 6, 6: 6, 7: 1, 8: 3,
                                                             9: 4}
    assert dict(enumerate(asym_class_map("fashion_mnist", 10))) == {0: 6, 1: 1, 2: 4, 3: 3, 4: 2, 5: 7, 6: 0, 7: 9,
                                                                    8: 8, 9: 9}
    c100 = asym_class_map("cifar100", 100)
    assert c100[:10].tolist() == [1, 2, 3, 4, 0, 6, 7, 8, 9, 5]
    assert c100[95:].tolist() == [96, 97, 98, 99, 95]
    expected = [(c // 5) * 5 + (c % 5 + 1) % 5 for c in range(100)]
    assert c100.tolist() == expected


def test_asym_rate_one_flips_every_source_sample():
    clean = balanced_labels(1000, 10)
    noisy = make_noisy_labels(clean, "asym", 1.0, num_classes=10, seed=0, dataset="cifar10")
    assert np.array_equal(noisy, asym_class_map("cifar10", 10)[clean])


def test_pairflip_rate_within_binomial_tolerance_and_only_to_next_class():
    n, k, rate = 20_000, 10, 0.45
    clean = balanced_labels(n, k)
    noisy = make_noisy_labels(clean, "pairflip", rate, num_classes=k, seed=5)
    flipped = noisy != clean
    assert np.array_equal(noisy[flipped], (clean[flipped] + 1) % k)
    assert abs(flipped.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    per_class = np.array([flipped[clean == c].mean() for c in range(k)])
    assert np.abs(per_class - rate).max() < 4 * np.sqrt(rate * (1 - rate) / (n / k))


def prototype_inputs(k: int, prototypes: int, repeats: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each class has ``prototypes`` distinct 4x4x4 inputs, each repeated ``repeats`` times."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(k * prototypes, 4, 4, 4), dtype=np.uint8)
    proto_id = np.repeat(np.arange(k * prototypes), repeats)
    return protos[proto_id], proto_id // prototypes


def test_instance_mean_rate_near_r_and_flip_target_depends_on_the_input():
    k, rate = 10, 0.4
    inputs, clean = prototype_inputs(k, prototypes=10, repeats=60)
    noisy = make_noisy_labels(clean, "instance", rate, num_classes=k, seed=0, inputs=inputs)
    assert abs((noisy != clean).mean() - rate) < 0.03
    # Copies of one input share one projection, so their flips concentrate on a few classes (uniform would give 1/9).
    proto_id = np.repeat(np.arange(k * 10), 60)
    top_share = []
    for p in range(k * 10):
        flips = noisy[(proto_id == p) & (noisy != clean)]
        if len(flips):
            top_share.append(np.bincount(flips).max() / len(flips))
    assert np.mean(top_share) > 0.5
    # The same labels and seed with other inputs give other noisy labels.
    other_inputs, _ = prototype_inputs(k, prototypes=10, repeats=60, seed=1)
    other = make_noisy_labels(clean, "instance", rate, num_classes=k, seed=0, inputs=other_inputs)
    assert (other != noisy).mean() > 0.1


def test_instance_rate_extremes():
    inputs, clean = prototype_inputs(5, prototypes=4, repeats=50)
    noisy = make_noisy_labels(clean, "instance", 1.0, num_classes=5, seed=0, inputs=inputs)
    assert (noisy != clean).mean() > 0.85  # q_i ~ N(1, 0.1^2) truncated to [0, 1] has mean ~0.92
    assert np.array_equal(make_noisy_labels(clean, "instance", 0.0, num_classes=5, seed=0, inputs=inputs), clean)


@pytest.mark.parametrize("kind,extra", [("sym", {}), ("asym", {"dataset": "cifar10"}), ("pairflip", {}),
                                        ("instance", {"inputs": np.arange(600 * 8).reshape(600, 8) % 251})])
def test_deterministic_for_a_seed_and_different_across_seeds(kind, extra):
    clean = balanced_labels(600, 10)
    a = make_noisy_labels(clean, kind, 0.5, num_classes=10, seed=11, **extra)
    b = make_noisy_labels(clean, kind, 0.5, num_classes=10, seed=11, **extra)
    c = make_noisy_labels(clean, kind, 0.5, num_classes=10, seed=12, **extra)
    assert a.dtype == np.int64 and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(clean, balanced_labels(600, 10))  # input untouched


def test_none_and_rate_zero_return_the_clean_labels():
    clean = balanced_labels(100, 10)
    for kind in ("none", "sym", "asym", "pairflip"):
        out = make_noisy_labels(clean, kind, 0.0, num_classes=10, seed=0, dataset="cifar10")
        assert np.array_equal(out, clean) and out is not clean
    assert np.array_equal(make_noisy_labels(clean, "none", 0.7, num_classes=10, seed=0), clean)


def test_noise_summary_against_counts():
    clean = np.array([0, 0, 0, 0, 1, 1, 2])
    noisy = np.array([0, 1, 1, 2, 1, 0, 2])
    summary = noise_summary(clean, noisy, num_classes=4)
    assert summary["noise_rate"] == pytest.approx(4 / 7)
    assert summary["num_samples"] == 7
    assert summary["transition_matrix"] == [[0.25, 0.5, 0.25, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
                                            [0.0, 0.0, 0.0, 0.0]]


def test_saved_labels_round_trip_and_are_reused(tmp_path, monkeypatch):
    clean = balanced_labels(500, 10)
    kw = dict(dataset="cifar10", kind="sym", rate=0.5, seed=2, num_classes=10, root=tmp_path)
    labels, info = load_or_make_noisy_labels(clean, **kw)
    path = tmp_path / "noisy_labels" / "cifar10_sym_0.5_seed2.npy"
    assert path == noisy_label_path(tmp_path, "cifar10", "sym", 0.5, 2)
    assert info["label_file"] == str(path) and not info["reused"]
    assert np.array_equal(np.load(path), labels)
    assert np.array_equal(labels, make_noisy_labels(clean, "sym", 0.5, num_classes=10, seed=2))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == "sym" and meta["rate"] == 0.5 and meta["seed"] == 2
    assert meta["num_samples"] == 500 and meta["num_classes"] == 10
    assert meta["noise_rate"] == pytest.approx((labels != clean).mean()) == pytest.approx(info["noise_rate"])
    assert np.allclose(meta["transition_matrix"], noise_summary(clean, labels, 10)["transition_matrix"])
    assert not list(path.parent.glob("*.tmp"))

    # A second call reads the file back instead of regenerating: prove it by editing the saved file.
    edited = labels.copy()
    edited[0] = (edited[0] + 1) % 10
    np.save(path, edited)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated instead of reusing the saved labels")

    monkeypatch.setattr("data_loader.noise.make_noisy_labels", fail)
    again, info2 = load_or_make_noisy_labels(clean, **kw)
    assert info2["reused"] and np.array_equal(again, edited)


def test_none_kind_writes_no_file(tmp_path):
    clean = balanced_labels(50, 10)
    labels, info = load_or_make_noisy_labels(clean, dataset="digits", kind="none", rate=0.5, seed=0, num_classes=10,
                                             root=tmp_path)
    assert np.array_equal(labels, clean) and info["label_file"] is None and info["noise_rate"] == 0.0
    assert not (tmp_path / "noisy_labels").exists()


def test_read_only_root_saves_to_the_user_cache_with_a_note(tmp_path, monkeypatch, capsys):
    data, cache = tmp_path / "ro" / "data", tmp_path / "cache"
    data.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    deny_writes_below(monkeypatch, tmp_path / "ro")
    clean = balanced_labels(300, 10)
    kw = dict(dataset="cifar10", kind="asym", rate=0.4, seed=1, num_classes=10, root=data)
    labels, info = load_or_make_noisy_labels(clean, **kw)
    cached = cache / "fine" / data.resolve().relative_to("/")
    assert label_cache_root(data) == cached
    assert info["label_file"] == str(noisy_label_path(cached, "cifar10", "asym", 0.4, 1)) and not info["reused"]
    assert Path(info["label_file"]).with_suffix(".json").is_file() and not any(data.iterdir())
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and f"{data} cannot be written" in note and info["label_file"] in note
    assert np.array_equal(labels, make_noisy_labels(clean, "asym", 0.4, num_classes=10, seed=1, dataset="cifar10"))
    again, info2 = load_or_make_noisy_labels(clean, **kw)
    assert info2["reused"] and info2["label_file"] == info["label_file"] and np.array_equal(again, labels)
    assert capsys.readouterr().err == ""
    # Another read-only folder gets its own labels: a user data set named alike never reuses these.
    other = load_or_make_noisy_labels(clean, **{**kw, "root": tmp_path / "ro" / "other"})[1]
    assert not other["reused"] and other["label_file"] != info["label_file"]


def test_labels_saved_in_the_data_folder_win_over_the_cache(tmp_path, monkeypatch):
    clean = balanced_labels(100, 10)
    kw = dict(dataset="digits", kind="sym", rate=0.5, seed=0, num_classes=10, root=tmp_path / "data")
    shipped = load_or_make_noisy_labels(clean, **kw)[1]["label_file"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    deny_writes_below(monkeypatch, tmp_path / "data")
    info = load_or_make_noisy_labels(clean, **kw)[1]
    assert info["label_file"] == shipped and info["reused"] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("bad,words", [(np.zeros(499, dtype=np.int64), "500 samples"),
                                       (np.full(500, 10, dtype=np.int64), "outside [0, 10)"),
                                       (np.zeros(500, dtype=np.float32), "integer")])
def test_mismatched_saved_file_is_refused(tmp_path, bad, words):
    clean = balanced_labels(500, 10)
    path = noisy_label_path(tmp_path, "cifar10", "sym", 0.2, 0)
    path.parent.mkdir(parents=True)
    np.save(path, bad)
    with pytest.raises(UserError, match="delete it") as err:
        load_or_make_noisy_labels(clean, dataset="cifar10", kind="sym", rate=0.2, seed=0, num_classes=10,
                                  root=tmp_path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_saved_file_is_refused(tmp_path):
    path = noisy_label_path(tmp_path, "digits", "pairflip", 0.3, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a numpy file")
    with pytest.raises(UserError, match="cannot read label file .*delete it"):
        load_or_make_noisy_labels(balanced_labels(50, 10), dataset="digits", kind="pairflip", rate=0.3, seed=1,
                                  num_classes=10, root=tmp_path)


def test_user_noise_file_accepted_and_validated(tmp_path):
    clean = balanced_labels(200, 10)
    user = (clean + 3) % 10
    good = tmp_path / "human.npy"
    np.save(good, user.astype(np.int32))
    labels, info = load_or_make_noisy_labels(clean, dataset="cifar10", kind="sym", rate=0.5, seed=0, num_classes=10,
                                             root=tmp_path, noise_file=good)
    assert labels.dtype == np.int64 and np.array_equal(labels, user)
    assert info["label_file"] == str(good) and info["kind"] == "file" and info["noise_rate"] == 1.0
    assert not (tmp_path / "noisy_labels").exists()

    short = tmp_path / "short.npy"
    np.save(short, user[:-1])
    with pytest.raises(UserError, match=r"shape \(199,\) but the cifar10 training set has 200 samples"):
        load_or_make_noisy_labels(clean, dataset="cifar10", kind="sym", rate=0.5, seed=0, num_classes=10,
                                  root=tmp_path, noise_file=short)
    with pytest.raises(UserError, match="is not an existing .npy file"):
        load_or_make_noisy_labels(clean, dataset="cifar10", kind="sym", rate=0.5, seed=0, num_classes=10,
                                  root=tmp_path, noise_file=tmp_path / "missing.npy")


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="sym", rate=1.5), r"noise rate 1.5 is outside \[0, 1\]; pass a fraction"),
    (dict(kind="sym", rate=-0.1), r"noise rate -0.1 is outside \[0, 1\]"),
    (dict(kind="gaussian", rate=0.2), "unknown noise kind 'gaussian'; use one of none, sym, asym, pairflip, instance"),
    (dict(kind="asym", rate=0.2, dataset="clothing1m"), "asym noise has no class map for dataset 'clothing1m'"),
    (dict(kind="asym", rate=0.2), "asym noise has no class map for dataset None"),
    (dict(kind="asym", rate=0.2, dataset="cifar100"), "the cifar100 asym map needs 100 classes"),
    (dict(kind="instance", rate=0.2), "instance noise needs the training inputs; pass inputs="),
    (dict(kind="instance", rate=0.2, inputs=np.zeros((5, 3))), "instance noise got 5 inputs for 100 labels"),
])
def test_error_messages(kwargs, message):
    clean = balanced_labels(100, 10)
    with pytest.raises(UserError, match=message) as err:
        make_noisy_labels(clean, num_classes=10, seed=0, **kwargs)
    assert "\n" not in str(err.value)


def test_bad_clean_labels_are_refused():
    with pytest.raises(UserError, match=r"clean_labels has labels in \[0, 12\], outside \[0, 10\)"):
        make_noisy_labels(np.array([0, 12]), "sym", 0.5, num_classes=10, seed=0)
