"""Run directory names: every defining flag is in the hash, and a flag added later leaves old names as they were."""
from __future__ import annotations

from dynamic_selection import train as ds
from engine.rundir import LATER_FLAGS, run_name


def _args(*flags: str):
    argv = ["--dataset", "digits", "--method", "fine", "--noise_kind", "sym", "--noise_rate", "0.5", *flags]
    return ds.resolve_args(ds.get_args_parser().parse_args(argv))


def test_name_reads_dataset_noise_and_seed():
    name = run_name(_args("--noise_rate", "0.4", "--seed", "3"), ["fine"])
    assert name.startswith("digits_sym0.4/fine_seed3_") and len(name.rsplit("_", 1)[1]) == 6


def test_defining_flags_change_the_hash_and_others_do_not():
    base = run_name(_args(), ["fine"])
    assert run_name(_args("--lr", "0.01"), ["fine"]) != base
    assert run_name(_args("--augment", "off"), ["fine"]) != base
    assert run_name(_args("--device", "cpu", "--output", "elsewhere", "--workers", "2"), ["fine"]) == base


def test_a_later_flag_at_its_old_behaviour_keeps_the_name_of_earlier_versions():
    args = _args()
    for flag, value in LATER_FLAGS.items():
        assert getattr(args, flag) == value  # the parser's default is the behaviour before the flag existed
        delattr(args, flag)  # as an earlier version's namespace
    assert run_name(args, ["fine"]) == run_name(_args(), ["fine"])
