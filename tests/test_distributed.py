"""Training under torchrun, without torchrun: two processes given the environment torchrun gives (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT) join a gloo group through setup_distributed and train a tiny Quixer.

(a) a 2-rank run with dropout killed mid-epoch (after a mid-epoch checkpoint) and resumed equals the
    uninterrupted 2-rank run in every logged metric, the test result and the weights;
(b) the ranks draw different dropout masks;
(c) with dropout 0, 2 ranks equal 1 process (test loss, history, final weights);
(d) a Quixer forward and backward on the `meta` device makes no tensor on another device (on a GPU, any
    such tensor would be a host round trip per step).

All runs of (a)-(c) happen in one spawn of two processes (one OpenMP thread each), which saves what they
report in files the tests below compare."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from fixtures import DeviceRecorder, counting_windows, write_token_folder
from quixer_rna import checkpoint as ckpt
from quixer_rna.formats.predictions import load_predictions
from quixer_rna.metrics import window_scores
from quixer_rna.models import build_model
from quixer_rna.training import TrainConfig, Trainer, train_model
from quixer_rna.training.distributed import DistContext, rank_seed, setup_distributed

QUIXER = {"embedding_dim": 8, "qubits": 2, "ansatz_layers": 1, "qsvt_degree": 2}
# 96 train windows / 16 = 6 steps per epoch. Evaluations at steps 4, 6 (end), 8, 12 (end); plain checkpoints
# at steps 3 and 9 (and 6, just before the epoch-end evaluation). The kill at step 11 comes 2 steps after the
# mid-epoch checkpoint of step 9, whose running train sums (step 9's, from both ranks) must survive it.
SETTINGS = dict(epochs=2, batch_size=16, lr=0.05, device="cpu", eval_every=4, checkpoint_every=3, patience=0, seed=5)
KILL_AT = 11
SPAWN_TIMEOUT = 300

class Killed(Exception):
    """Stands in for SIGKILL of every rank at one step."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _data(root: Path) -> Path:
    splits = {"train": counting_windows(96, seed=1), "val": counting_windows(24, seed=2),
              "test": counting_windows(21, seed=3)}  # 21 test windows: uneven shards of 10 and 11
    return write_token_folder(root, splits, 7)


def _worker(rank: int, world: int, port: int, token_dir: str, out: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    torch.set_num_threads(1)
    from quixer_rna.formats.tokens import open_tokens

    out_dir = Path(out)
    dist = setup_distributed("cpu")
    assert (dist.rank, dist.world_size, dist.active) == (rank, world, True)
    data = open_tokens(token_dir)
    report: dict = {}
    try:
        # (c) without dropout, to compare with one process
        report["nodrop"] = train_model("quixer", {**QUIXER, "dropout": 0.0}, data, TrainConfig(**SETTINGS),
                                       out_dir / "nodrop", dist=dist)

        # (a) + (b) with dropout: uninterrupted, recording each rank's first dropout mask
        trainer = Trainer("quixer", {**QUIXER, "dropout": 0.1}, data, TrainConfig(**SETTINGS), out_dir / "ref", dist)
        masks: list[torch.Tensor] = []

        def record(module, inputs, output):
            if module.training and not masks:
                masks.append(((output == 0) & (inputs[0] != 0)).clone())

        handle = trainer.model.dropout.register_forward_hook(record)
        report["ref"] = trainer.run()
        handle.remove()
        torch.save({"mask": masks[0]}, out_dir / f"mask{rank}.pt")

        def kill(step: int) -> None:
            if step == KILL_AT:
                raise Killed

        try:
            train_model("quixer", {**QUIXER, "dropout": 0.1}, data, TrainConfig(**SETTINGS), out_dir / "cut",
                        step_callback=kill, dist=dist)
            raise AssertionError("the run was not killed")
        except Killed:
            saved = ckpt.load_checkpoint(out_dir / "cut" / ckpt.LAST)["state"]
            report["killed_with"] = [saved["next_epoch"], saved["next_step"], saved["global_step"],
                                     float(saved["train_sums"][3])]
        # what survives a SIGKILL is the disk: a new Trainer resumes from checkpoint_last.pt
        torch.manual_seed(12345 + rank)  # the process's RNG must not matter
        report["cut"] = train_model("quixer", {**QUIXER, "dropout": 0.1}, data, TrainConfig(**SETTINGS),
                                    out_dir / "cut", dist=dist)

        # rank 0 takes its time writing checkpoint_best.pt: the other rank must still test with the best weights
        write = ckpt.save_checkpoint

        def slow_write(path, state):
            if rank == 0 and Path(path).name == ckpt.BEST and state["state"]["global_step"] == 12:
                time.sleep(0.5)
            write(path, state)

        ckpt.save_checkpoint = slow_write
        try:
            report["race"] = train_model("quixer", {**QUIXER, "dropout": 0.0}, data, TrainConfig(**SETTINGS),
                                         out_dir / "race", dist=dist)
        finally:
            ckpt.save_checkpoint = write
    finally:
        dist.close()
    (out_dir / f"report{rank}.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every 2-rank run, and the 1-process run without dropout."""
    root = tmp_path_factory.mktemp("distributed")
    token_dir = _data(root / "data")
    context = mp.spawn(_worker, args=(2, _free_port(), str(token_dir), str(root)), nprocs=2, join=False)
    deadline = time.monotonic() + SPAWN_TIMEOUT
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"2 gloo ranks did not finish in {SPAWN_TIMEOUT} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    from quixer_rna.formats.tokens import open_tokens

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train_model("quixer", {**QUIXER, "dropout": 0.0}, open_tokens(token_dir), TrainConfig(**SETTINGS),
                          root / "one", dist=DistContext())
    finally:
        torch.set_num_threads(threads)
    (root / "one.json").write_text(json.dumps(one))
    return root


def _report(root: Path, rank: int) -> dict:
    return json.loads((root / f"report{rank}.json").read_text())


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(folder / ckpt.LAST)["model"]


# ---- (a) kill mid-epoch, resume: the same run ------------------------------------------------------------------

def test_two_ranks_killed_mid_epoch_and_resumed_equal_the_uninterrupted_run(runs):
    ref_rows, cut_rows = _rows(runs / "ref"), _rows(runs / "cut")
    assert [(r["epoch"], r["step"], r["epoch_end"]) for r in ref_rows] == [(1, 0, False), (1, 4, False), (1, 6, True),
                                                                          (2, 8, False), (2, 12, True)]
    assert len(cut_rows) == len(ref_rows)
    for ref, cut in zip(ref_rows, cut_rows):
        trained = {"postselection", "train_loss"} if ref["step"] else set()  # the start has trained nothing
        assert set(ref) == set(cut) and {"active_layers", "val_loss", *trained} <= set(ref)
        for key in ref:
            if key != "seconds":
                assert cut[key] == ref[key], (ref["step"], key)
    # killed with the checkpoint of step 9 (epoch 2, step 3 of 6) on disk, holding step 9's running sums over
    # the whole global batch of 16 (both ranks'), which the row of step 12 must include
    assert _report(runs, 0)["killed_with"] == [2, 3, 9, 16.0]
    ref_result, cut_result = _report(runs, 0)["ref"], _report(runs, 0)["cut"]
    for key in set(ref_result) | set(cut_result):
        if key != "train_seconds":
            assert cut_result[key] == ref_result[key], key
    assert cut_result["world_size"] == 2 and cut_result["steps"] == 12
    assert _report(runs, 1)["cut"]["test"] == cut_result["test"]  # every rank holds the gathered result
    ref_pred, cut_pred = (load_predictions(runs / name / "test_predictions.npz") for name in ("ref", "cut"))
    assert len(ref_pred) == 21
    np.testing.assert_array_equal(cut_pred.nll, ref_pred.nll)
    np.testing.assert_array_equal(cut_pred.correct, ref_pred.correct)
    a, b = _weights(runs / "ref"), _weights(runs / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every rank's random stream was saved and restored
    rng_ref = ckpt.load_checkpoint(runs / "ref" / ckpt.LAST)["rng"]
    rng_cut = ckpt.load_checkpoint(runs / "cut" / ckpt.LAST)["rng"]
    assert len(rng_ref) == len(rng_cut) == 2
    assert all(torch.equal(x["torch"], y["torch"]) for x, y in zip(rng_ref, rng_cut))


# ---- (b) each rank its own dropout masks -----------------------------------------------------------------------

def test_ranks_draw_different_dropout_masks(runs):
    masks = [torch.load(runs / f"mask{rank}.pt", weights_only=True)["mask"] for rank in range(2)]
    assert masks[0].shape == masks[1].shape == (8, 3, 8)  # half of the global batch of 16, 3 context tokens
    for mask in masks:
        assert 0 < mask.float().mean() < 0.3  # dropout 0.1 did drop, not everything
    assert not torch.equal(masks[0], masks[1])
    rngs = ckpt.load_checkpoint(runs / "ref" / ckpt.LAST)["rng"]
    assert not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    assert rank_seed(5, 0) == 5 and rank_seed(5, 1) != 5 and rank_seed(5, 1) != rank_seed(5, 2)


# ---- (c) 2 ranks == 1 process without dropout ------------------------------------------------------------------

def test_two_ranks_equal_one_process_without_dropout(runs):
    one = json.loads((runs / "one.json").read_text())
    two = _report(runs, 0)["nodrop"]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["steps"] == one["steps"] == 12 and two["evaluations"] == one["evaluations"] == 5
    for key in ("loss", "accuracy", "top5_accuracy"):
        assert two["test"][key] == pytest.approx(one["test"][key], abs=1e-5)
    assert two["val"]["loss"] == pytest.approx(one["val"]["loss"], abs=1e-6)
    assert two["best_step"] == one["best_step"] == 12  # the premise of test_a_rank_tests_with_the_best_weights
    one_rows, two_rows = _rows(runs / "one"), _rows(runs / "nodrop")
    assert [r["step"] for r in one_rows] == [r["step"] for r in two_rows]
    for a, b in zip(one_rows, two_rows):
        for key, value in a.items():
            if key != "seconds":
                assert b[key] == (None if value is None else pytest.approx(value, abs=1e-5)), (a["step"], key)
    a, b = _weights(runs / "one"), _weights(runs / "nodrop")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    np.testing.assert_allclose(load_predictions(runs / "nodrop" / "test_predictions.npz").nll,
                               load_predictions(runs / "one" / "test_predictions.npz").nll, atol=1e-5)


def test_a_rank_tests_with_the_best_weights_rank_0_wrote(runs):
    """The same run as (c)'s 2-rank one, but rank 0 writes checkpoint_best.pt slowly and nothing waits for it."""
    fixed = load_predictions(runs / "nodrop" / "test_predictions.npz").nll
    raced = load_predictions(runs / "race" / "test_predictions.npz").nll
    np.testing.assert_array_equal(raced[:10], fixed[:10])  # rank 0's shard
    np.testing.assert_array_equal(raced, fixed)


# ---- (d) the meta device -------------------------------------------------------------------------------------

@pytest.mark.parametrize("layerwise", [False, True])
def test_quixer_step_on_meta_creates_nothing_on_another_device(layerwise):
    """A training step's model work (forward, the loop's scores and sums, the model hooks, backward, gradient
    norm and finiteness flag) with the model and tokens on `meta`."""
    config = {**QUIXER, "qubits": 3, "ansatz_layers": 2, "dropout": 0.1, "postselection_weight": 0.5,
              "use_layerwise_training": layerwise, "layerwise_epochs": 1}
    torch.manual_seed(0)
    model = build_model("quixer", 7, 5, config).to("meta").train()
    model.on_epoch_start(1)
    with DeviceRecorder() as recorder:
        tokens = torch.randint(0, 7, (6, 6), device="meta")
        scores = window_scores(model(tokens[:, :-1]), tokens[:, -1])
        loss = scores["nll"].sum() / 6 + model.auxiliary_loss()
        extra = model.extra_metrics()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        bad = ~torch.isfinite(norm)
    assert set(recorder.devices) == {"meta"}, {k: sorted(v) for k, v in recorder.devices.items() if k != "meta"}
    assert extra["postselection"].device.type == "meta" and bad.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters())
    assert model.memory_estimate(6)[0] > 0
