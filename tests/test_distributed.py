"""Distributed helpers and distributed FINE: a plain run is a world of size 1, and two gloo processes on the CPU
give what one process gives on the same data."""
from __future__ import annotations

import contextlib
import io
import os
import socket
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import SubsetRandomSampler, TensorDataset

from fine.distributed import (ShardedSampler, all_reduce_sum, broadcast_buffers, broadcast_object, cleanup,
                              gather_by_index, init_distributed, is_main_process, print0, shard_indices)
from fine.errors import UserError
from fine.losses import build_loss
from fine.selection import (SelectorConfig, class_grams, eigvecs_from_grams, fine_select, fine_select_distributed,
                            select_samples, split_scores)
from fine.evaluation import evaluation_loader, predict
from tests.fixtures import synthetic_features as synthetic

WORLD = 2
N_GATHER = 37  # samples in the gather test; rank 0 holds 25 of them, rank 1 the other 12
SUBSET = torch.tensor([3, 5, 8, 13, 21, 22, 30, 34, 40, 41, 47, 55, 56, 60, 61, 70, 72, 77, 81, 89, 90, 95, 99])
# (n, d, c, noise, spread, seed): FINE data for the two-process comparison
FINE_DATA = (1500, 24, 5, 0.4, 0.6, 7)
N_ELR, C_ELR = 30, 4  # ELR memory of the sync test; its last 2 samples are never visited
ELR_SHARDS = ([17, 11], [9, 19])  # per epoch: how many of the visited samples rank 0 and rank 1 get


def gather_rows(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Known per-sample values: (n, 3) float rows ``10 i + [0, 1, 2]`` and (n,) bool ``i % 3 == 0``."""
    return index.double().unsqueeze(1) * 10 + torch.arange(3.0), index % 3 == 0


def split(n: int, sizes: list[int], seed: int) -> list[torch.Tensor]:
    """A random partition of range(n) into consecutive shards of the given sizes."""
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(seed)).split(sizes))


def elr_epochs(rank: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per epoch, the known ELR update of one rank's shard (``rank`` None: of all visited samples): logits (n, C_ELR)
    and dataset indices (n,). Each visited sample is in one shard per epoch, in another rank's shard next epoch."""
    epochs = []
    for epoch, sizes in enumerate(ELR_SHARDS):
        index = split(N_ELR - 2, sizes, seed=20 + epoch)
        index = torch.cat(index) if rank is None else index[rank]
        logits = 3 * torch.randn(N_ELR, C_ELR, generator=torch.Generator().manual_seed(30 + epoch))
        epochs.append((logits[index], index))
    return epochs


def selection_dict(sel) -> dict:
    return {"mask": sel.clean_mask, "prob": sel.clean_prob, "scores": sel.scores, "eigvecs": sel.eigvecs}


def selection_logits(features: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(n, C) logits for the loss-based selectors, a fixed function of the features."""
    return features[:, :num_classes] * 3.0


def predict_case() -> tuple[torch.nn.Module, TensorDataset]:
    """A seeded linear model and 11 labelled samples ``(x, y, index)``: the same on every process."""
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    x, y = torch.randn(11, 5, generator=gen), torch.randint(0, 3, (11,), generator=gen)
    return torch.nn.Linear(5, 3), TensorDataset(x, y, torch.arange(11))


def run_checks(rank: int) -> dict:
    """Everything the two-process tests look at, computed on one rank of a running gloo group."""
    out: dict = {"is_main": is_main_process()}
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print0("hello from", rank)
    out["printed"] = buffer.getvalue()

    index = split(N_GATHER, [25, N_GATHER - 25], seed=0)[rank]
    rows, flags = gather_rows(index)
    out["gather_rows"] = gather_by_index(rows, index, N_GATHER)
    out["gather_flags"] = gather_by_index(flags, index, N_GATHER)
    mine = torch.arange(N_GATHER) if rank == 0 else torch.arange(0)  # rank 1 holds nothing
    out["gather_uneven"] = gather_by_index(gather_rows(mine)[0], mine, N_GATHER)

    floats = torch.tensor([rank + 1.0, 2.0], dtype=torch.float64)
    counts = torch.tensor([rank, 1, 5])
    out["reduced_in_place"] = all_reduce_sum(floats) is floats
    out["reduced"], out["reduced_int"] = floats, all_reduce_sum(counts)
    out["broadcast"] = broadcast_object({"from": rank, "list": [rank] * 3})

    elr = build_loss("elr", num_classes=C_ELR, num_samples=N_ELR)
    for logits, index in elr_epochs(rank):
        elr.update(logits, index)
        elr.synchronize()
    out["elr_memory"], out["elr_touched"] = elr.target, elr._touched

    for epoch in (0, 3):
        out[f"train_epoch{epoch}"] = shard_indices(SUBSET, world_size=WORLD, rank=rank, shuffle=True, pad=True,
                                                   generator_seed=5 + epoch).tolist()
    out["eval"] = shard_indices(SUBSET, world_size=WORLD, rank=rank, shuffle=False, pad=False).tolist()

    norm = torch.nn.BatchNorm1d(3)
    norm.running_mean.fill_(rank + 1.0)  # what each rank's last training batch would leave
    broadcast_buffers([norm])
    out["buffers"] = (norm.running_mean.clone(), int(norm.num_batches_tracked))

    model, dataset = predict_case()
    loader = evaluation_loader(dataset, batch_size=4, num_workers=0, pin_memory=False)
    out["predict_shard"] = [int(i) for _, _, index in loader for i in index]
    out["predict"] = predict([model], loader, torch.device("cpu"))

    n, d, c, noise, spread, seed = FINE_DATA
    feats, labels, is_clean = synthetic(n, d, c, noise, spread, seed)
    ref = is_clean & (torch.arange(n) % 2 == 0)
    local = split(n, [700, n - 700], seed=3)[rank]
    out["fine"] = selection_dict(fine_select_distributed(feats[local], labels[local], local, n, c))
    out["fine_ref"] = selection_dict(fine_select_distributed(feats[local], labels[local], local, n, c,
                                                             ref_mask_local=ref[local]))
    out["fine_mean"] = selection_dict(fine_select_distributed(feats[local], labels[local], local, n, c,
                                                              vector="mean", fit="kmeans"))
    logits = selection_logits(feats, c)
    for kind in ("fine", "loss-gmm", "small-loss"):
        config = SelectorConfig(kind, {"forget_rate": 0.4} if kind == "small-loss" else {})
        out[f"select_{kind}"] = selection_dict(select_samples(config, feats[local], logits[local], labels[local], c,
                                                              positions=local, num_samples=n))
    # Shards that overlap, and NaN features on one rank only: every rank raises instead of hanging.
    overlap = torch.arange(n // 2 + 10) if rank == 0 else torch.arange(n // 2, n)
    bad = feats.clone()
    if rank == 1:
        bad[n - 1, 0] = float("nan")
    for name, (f, i) in {"overlap": (feats[overlap], overlap), "nan": (bad[local], local)}.items():
        try:
            fine_select_distributed(f, labels[i], i, n, c)
            out[f"error_{name}"] = None
        except ValueError as error:
            out[f"error_{name}"] = str(error)
    return out


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Spawned process: join the gloo group as torchrun would set it up, run the checks, save them."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    try:
        info = init_distributed("cpu")
    except (RuntimeError, ValueError, OSError) as error:  # the parent turns this into a skip
        Path(out_dir, f"init_failed_{rank}.txt").write_text(f"{type(error).__name__}: {error}")
        return
    out = run_checks(rank)
    out["dist"] = (info.rank, info.world_size, info.local_rank, str(info.device), info.is_main)
    torch.save(out, Path(out_dir, f"rank{rank}.pt"))
    cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run :func:`worker` on 2 spawned CPU processes (gloo) and return each rank's results."""
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    out_dir = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(worker, args=(WORLD, free_port(), str(out_dir)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two gloo processes did not finish within 120 s")
    failed = sorted(out_dir.glob("init_failed_*.txt"))
    if failed:
        pytest.skip(f"gloo process group could not start on 127.0.0.1: {failed[0].read_text()}")
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


# ----------------------------------------------------------------------------------------------------------------
# world of size 1 (no process group)


@pytest.fixture
def plain_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_plain_run_is_a_world_of_one(plain_env, capsys) -> None:
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device, info.is_main) == (0, 1, 0,
                                                                                       torch.device("cpu"), True)
    assert not dist.is_initialized()
    t = torch.tensor([1.5, 2.0])
    assert all_reduce_sum(t) is t and t.tolist() == [1.5, 2.0]
    obj = {"a": [1, 2]}
    assert broadcast_object(obj) is obj
    assert is_main_process()
    print0("only", "rank", 0)
    assert capsys.readouterr().out == "only rank 0\n"
    cleanup()
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            init_distributed("cuda")


def test_gather_by_index_single_process() -> None:
    index = torch.tensor([7, 2, 9, 0])
    rows, flags = gather_rows(index)
    full = gather_by_index(rows, index, 12)
    assert full.shape == (12, 3) and full.dtype == torch.float64
    expected = torch.zeros(12, 3, dtype=torch.float64)
    expected[index] = rows
    assert torch.equal(full, expected)
    flags_full = gather_by_index(flags, index, 12)
    assert flags_full.dtype == torch.bool and flags_full.nonzero().squeeze(1).tolist() == [0, 9]
    assert gather_by_index(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 3).shape == (3, 4)
    with pytest.raises(ValueError, match="index must be"):
        gather_by_index(rows, index[:2], 12)


def test_shard_indices_single_process_is_subset_random_sampler() -> None:
    """One process: the trainers' shard of a shuffled selection is SubsetRandomSampler's order."""
    for seed in (11, 15):
        reference = SubsetRandomSampler(SUBSET.tolist(), generator=torch.Generator().manual_seed(seed))
        ours = shard_indices(SUBSET, world_size=1, rank=0, shuffle=True, pad=True, generator_seed=seed)
        assert ours.tolist() == list(reference)
    assert shard_indices(SUBSET, world_size=1, rank=0, shuffle=False, pad=True).tolist() == SUBSET.tolist()


def test_shard_indices_split_and_pad() -> None:
    indices = torch.arange(100, 110)
    perm = indices[torch.randperm(10, generator=torch.Generator().manual_seed(2))]
    padded = torch.cat([perm, perm[:2]])
    shards = [shard_indices(indices, world_size=3, rank=r, shuffle=True, pad=True, generator_seed=2) for r in range(3)]
    for r, shard in enumerate(shards):
        assert shard.tolist() == padded[r::3].tolist()
        assert len(shard) == 4
    assert set(torch.cat(shards).tolist()) == set(indices.tolist())
    shards = [shard_indices(indices, world_size=3, rank=r, shuffle=False, pad=False) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == indices.tolist()  # each sample exactly once
    assert [len(s) for s in shards] == [4, 3, 3]
    few = [shard_indices(torch.tensor([5]), world_size=3, rank=r, shuffle=False, pad=True) for r in range(3)]
    assert [s.tolist() for s in few] == [[5], [5], [5]]
    assert shard_indices(torch.arange(0), world_size=2, rank=1, shuffle=True, pad=True, generator_seed=0).numel() == 0
    with pytest.raises(ValueError, match="exactly one of generator_seed and generator"):
        shard_indices(indices, world_size=1, rank=0, shuffle=True, pad=False)
    with pytest.raises(ValueError, match="rank must lie"):
        shard_indices(indices, world_size=2, rank=2, shuffle=False, pad=False)


def test_split_scores_is_fine_selects_last_step() -> None:
    feats, labels, is_clean = synthetic(1200, 16, 4, 0.4, 0.8, seed=1)
    ref = is_clean & (labels != 2)
    ref[(labels == 2).nonzero()[0]] = True  # class 2 has a single reference sample: kept whole
    with pytest.warns(UserWarning, match=r"class\(es\) \[2\] have fewer than 2 reference samples"):
        sel = fine_select(feats, labels, 4, ref_mask=ref)
    counts = torch.bincount(labels[ref], minlength=4)
    with pytest.warns(UserWarning, match="fewer than 2 reference samples") as record:
        again = split_scores(sel.scores, labels, 4, ref_counts=counts)
    assert record[0].filename == __file__  # the warning points at the caller
    assert again.eigvecs is None
    assert torch.equal(again.clean_mask, sel.clean_mask) and torch.equal(again.clean_prob, sel.clean_prob)
    assert bool(again.clean_mask[labels == 2].all())
    assert torch.equal(split_scores(sel.scores, labels, 4, fit="kmeans").clean_mask,
                       fine_select(feats, labels, 4, fit="kmeans", eigvecs=sel.eigvecs).clean_mask)
    with pytest.raises(ValueError, match="ref_counts must have shape"):
        split_scores(sel.scores, labels, 4, ref_counts=counts[:3])


def test_fine_select_distributed_single_process_equals_fine_select() -> None:
    n, d, c, noise, spread, seed = FINE_DATA
    feats, labels, is_clean = synthetic(n, d, c, noise, spread, seed)
    ref = is_clean & (torch.arange(n) % 2 == 0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # rows in any order, keyed by index
    for mask in (None, ref):
        local_mask = None if mask is None else mask[order]
        ours = fine_select_distributed(feats[order], labels[order], order, n, c, ref_mask_local=local_mask)
        grams, sums, _ = class_grams(feats, labels, c, mask)
        same_vectors = fine_select(feats, labels, c, ref_mask=mask, eigvecs=eigvecs_from_grams(grams, sums))
        assert torch.equal(ours.clean_mask, same_vectors.clean_mask)
        torch.testing.assert_close(ours.clean_prob, same_vectors.clean_prob, rtol=0, atol=1e-5)
        lanczos = fine_select(feats, labels, c, ref_mask=mask)
        assert torch.equal(ours.clean_mask, lanczos.clean_mask)
        assert (ours.eigvecs.double() * lanczos.eigvecs.double()).sum(1).min() >= 0.9999
        torch.testing.assert_close(ours.scores, lanczos.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.clean_prob, lanczos.clean_prob, rtol=0, atol=1e-4)
    mean = fine_select_distributed(feats[order], labels[order], order, n, c, vector="mean", score="squared")
    assert torch.equal(mean.clean_mask, fine_select(feats, labels, c, vector="mean", score="squared").clean_mask)


def test_fine_select_distributed_rejects_bad_shards() -> None:
    feats, labels, _ = synthetic(100, 8, 3, 0.2, 0.5, seed=2)
    index = torch.arange(100)
    with pytest.raises(ValueError, match="exactly one rank's shard"):
        fine_select_distributed(feats[:90], labels[:90], index[:90], 100, 3)  # samples 90..99 missing
    with pytest.raises(ValueError, match="exactly one rank's shard"):
        fine_select_distributed(feats, labels, index % 50, 100, 3)  # repeated samples (a padded sampler)
    with pytest.raises(ValueError, match="index_local must lie"):
        fine_select_distributed(feats, labels, index + 1, 100, 3)
    bad = feats.clone()
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fine_select_distributed(bad, labels, index, 100, 3)
    empty = fine_select_distributed(feats[:0], labels[:0], index[:0], 0, 3)
    assert empty.clean_mask.shape == (0,)


# ----------------------------------------------------------------------------------------------------------------
# two gloo processes on the CPU


def test_two_ranks_helpers(ranks) -> None:
    assert [r["dist"] for r in ranks] == [(0, 2, 0, "cpu", True), (1, 2, 1, "cpu", False)]
    assert [r["is_main"] for r in ranks] == [True, False]
    assert [r["printed"] for r in ranks] == ["hello from 0\n", ""]
    for r in ranks:
        assert r["reduced_in_place"] and r["reduced"].tolist() == [3.0, 4.0] and r["reduced_int"].tolist() == [1, 2, 10]
        assert r["broadcast"] == {"from": 0, "list": [0, 0, 0]}


def test_two_ranks_gather_by_index(ranks) -> None:
    rows, flags = gather_rows(torch.arange(N_GATHER))
    for r in ranks:
        assert torch.equal(r["gather_rows"], rows) and torch.equal(r["gather_flags"], flags)
        assert torch.equal(r["gather_uneven"], rows)


def test_two_ranks_evaluate_rank_zeros_batch_norm_statistics(ranks) -> None:
    for r in ranks:
        assert r["buffers"][0].tolist() == [1.0, 1.0, 1.0] and r["buffers"][1] == 0


def test_two_ranks_elr_memory_synchronizes_to_one_process(ranks) -> None:
    single = build_loss("elr", num_classes=C_ELR, num_samples=N_ELR)
    for logits, index in elr_epochs(None):
        single.update(logits, index)
    assert single.target[:N_ELR - 2].sum(1).gt(0).all() and not single.target[N_ELR - 2:].any()
    for r in ranks:
        torch.testing.assert_close(r["elr_memory"], single.target, rtol=0, atol=0)
        assert not r["elr_touched"].any()


@pytest.mark.parametrize("kind", ["fine", "loss-gmm", "small-loss"])
def test_two_ranks_select_what_one_process_selects(ranks, kind) -> None:
    """The trainers' one selector call gives every rank the plain run's selection (FINE up to the eigen-solver)."""
    n, d, c, noise, spread, seed = FINE_DATA
    feats, labels, _ = synthetic(n, d, c, noise, spread, seed)
    config = SelectorConfig(kind, {"forget_rate": 0.4} if kind == "small-loss" else {})
    plain = select_samples(config, feats, selection_logits(feats, c), labels, c)
    assert 0 < int(plain.clean_mask.sum()) < n
    for r in ranks:
        got = r[f"select_{kind}"]
        agree = (got["mask"] == plain.clean_mask).float().mean().item()
        assert agree == 1.0 if kind != "fine" else agree > 0.999
        torch.testing.assert_close(got["scores"], plain.scores, rtol=1e-4, atol=1e-4)


def test_plain_run_takes_all_rows_in_order(plain_env) -> None:
    n, d, c, noise, spread, seed = FINE_DATA
    feats, labels, _ = synthetic(n, d, c, noise, spread, seed)
    config = SelectorConfig()
    plain = select_samples(config, feats, feats[:, :c], labels, c)
    same = select_samples(config, feats, feats[:, :c], labels, c, positions=torch.arange(n), num_samples=n)
    assert torch.equal(plain.clean_mask, same.clean_mask)
    with pytest.raises(ValueError, match="all the samples in order"):
        select_samples(config, feats[:10], feats[:10, :c], labels[:10], c, positions=torch.arange(10) + 5,
                       num_samples=n)


def test_two_ranks_predict_on_their_shares_what_one_process_predicts(ranks) -> None:
    model, dataset = predict_case()
    x, y, _ = dataset.tensors
    expected = model(x).detach()[None]  # (1 network, N, C) logits
    assert sorted(ranks[0]["predict_shard"] + ranks[1]["predict_shard"]) == list(range(11))  # each sample once
    assert len(ranks[0]["predict_shard"]) == 6 and len(ranks[1]["predict_shard"]) == 5
    for r in ranks:
        logits, labels = r["predict"]
        torch.testing.assert_close(logits, expected)
        assert torch.equal(labels, y)


def test_sharded_random_sampler_is_subset_random_sampler_in_one_process_and_partitions_in_two() -> None:
    ours = ShardedSampler(SUBSET, torch.Generator().manual_seed(3))
    theirs = SubsetRandomSampler(SUBSET.tolist(), generator=torch.Generator().manual_seed(3))
    passes = [list(ours) for _ in range(3)]
    assert passes == [list(theirs) for _ in range(3)] and len(ours) == len(SUBSET)
    assert passes[0] != passes[1]  # a fresh order on every pass
    halves = [ShardedSampler(SUBSET, torch.Generator().manual_seed(3), world_size=2, rank=r) for r in (0, 1)]
    for order in passes:
        padded = order + order[:1]  # 23 samples padded to 24, dealt out round-robin
        assert [list(h) for h in halves] == [padded[0::2], padded[1::2]]
        assert len(halves[0]) == len(halves[1]) == 12


def test_two_ranks_sharded_sampler(ranks) -> None:
    n = len(SUBSET)
    for epoch in (0, 3):
        perm = SUBSET[torch.randperm(n, generator=torch.Generator().manual_seed(5 + epoch))]
        padded = torch.cat([perm, perm[:1]])  # 23 samples padded to 24
        shards = [r[f"train_epoch{epoch}"] for r in ranks]
        assert [len(s) for s in shards] == [12, 12]
        assert [shards[0], shards[1]] == [padded[0::2].tolist(), padded[1::2].tolist()]
        assert set(shards[0]) | set(shards[1]) == set(SUBSET.tolist())
    assert ranks[0]["train_epoch0"] != ranks[0]["train_epoch3"]
    shards = [r["eval"] for r in ranks]
    assert [len(s) for s in shards] == [12, 11]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == SUBSET.tolist()


@pytest.mark.parametrize("key,options", [("fine", {}), ("fine_ref", {"ref": True}),
                                         ("fine_mean", {"vector": "mean", "fit": "kmeans"})])
def test_two_ranks_fine_select_matches_single_process(ranks, key, options) -> None:
    n, d, c, noise, spread, seed = FINE_DATA
    feats, labels, is_clean = synthetic(n, d, c, noise, spread, seed)
    ref = is_clean & (torch.arange(n) % 2 == 0) if options.pop("ref", False) else None
    single = fine_select(feats, labels, c, ref_mask=ref, **options)
    first, second = ranks[0][key], ranks[1][key]
    for name in ("mask", "prob", "scores", "eigvecs"):
        assert torch.equal(first[name], second[name]), f"{name} differs between the ranks"
    assert torch.equal(first["mask"], single.clean_mask)
    torch.testing.assert_close(first["prob"], single.clean_prob, rtol=0, atol=1e-4)
    torch.testing.assert_close(first["scores"], single.scores, rtol=0, atol=1e-5)
    assert (first["eigvecs"].double() * single.eigvecs.double()).sum(1).min() >= 0.9999


def test_two_ranks_bad_shards_raise_everywhere(ranks) -> None:
    for r in ranks:
        assert "exactly one rank's shard" in r["error_overlap"]
        assert "NaN or Inf" in r["error_nan"]
