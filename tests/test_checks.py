"""The shared validation layer (engine/checks.py): defaults it resolves, refusals made before any data is loaded, and
run directories that exist only once a run has started."""
from __future__ import annotations

import contextlib
import io

import pytest

import dividemix.train as dm
import dynamic_selection.train as ds
from fine.errors import UserError

TRAINERS = {"dynamic_selection": ds, "dividemix": dm}


def dry_run(trainer, *flags: str) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return trainer.main(trainer.get_args_parser().parse_args([*flags, "--dry_run"]))


@pytest.mark.parametrize("trainer", TRAINERS.values(), ids=TRAINERS)
@pytest.mark.parametrize("epochs,start", [(2, 1), (30, 20), (80, 53), (120, 80)])
def test_linear_decay_starts_at_two_thirds_of_the_epochs_in_both_trainers(trainer, epochs, start):
    flags = ["--dataset", "digits", "--epochs", str(epochs), "--warmup", "1"]
    assert dry_run(trainer, *flags, "--lr_schedule", "linear-decay")["decay_start"] == start
    assert dry_run(trainer, *flags)["decay_start"] is None  # multistep


def test_coteaching_plus_keeps_the_published_decay_start():
    assert dry_run(ds, "--dataset", "cifar10", "--method", "coteaching+")["decay_start"] == 80  # 2/3 of 120


@pytest.mark.parametrize("trainer", TRAINERS.values(), ids=TRAINERS)
@pytest.mark.parametrize("flags,message", [
    (["--lr_schedule", "linear-decay", "--epochs", "10", "--decay_start", "10"],
     "--decay_start 10 is not before --epochs 10"),
    (["--lr_schedule", "cosine", "--decay_start", "3"], "--decay_start applies to --lr_schedule linear-decay"),
    (["--arch", "mlp"], "--arch mlp takes table rows (D,) but --dataset cifar10 holds images"),
    (["--arch", "small_cnn", "--pretrained", "imagenet"], "--pretrained imagenet applies to --arch resnet50 only"),
    (["--amp", "fp16"], "--amp fp16 needs a CUDA device"),
    (["--noise_kind", "real"], "--noise_kind real is for clothing1m and webvision"),
    (["--noise_label", "worst"], "--noise_label worst needs --noise_kind human"),
])
def test_refused_before_any_data_is_read(tmp_path, trainer, flags, message):
    """The data folder does not exist: the refusal is the flags', not the missing data's, and nothing is written."""
    argv = ["--dataset", "cifar10", "--data_path", str(tmp_path / "absent"), "--device", "cpu", "--output",
            str(tmp_path / "runs"), "--warmup", "1", "--lambda_u", "25", *flags]
    argv = argv if trainer is dm else [a for a in argv if a not in ("--lambda_u", "25")]
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        trainer.main(trainer.get_args_parser().parse_args(argv))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "absent").exists()


@pytest.mark.parametrize("trainer", TRAINERS.values(), ids=TRAINERS)
def test_a_run_failing_before_its_first_epoch_leaves_no_directory(tmp_path, trainer):
    """ImageNet weights on one-channel digits: refused once the data is loaded, before the first epoch."""
    argv = ["--dataset", "digits", "--data_path", str(tmp_path / "data"), "--device", "cpu", "--output",
            str(tmp_path / "runs"), "--epochs", "2", "--warmup", "1", "--arch", "resnet50", "--pretrained",
            "imagenet"]
    for _ in range(2):  # the same error again, not "run directory ... already exists"
        with pytest.raises(UserError, match="weights expect 3 input channels, not 1"):
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.main(trainer.get_args_parser().parse_args(argv))
    assert not (tmp_path / "runs").exists()
