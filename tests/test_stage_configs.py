"""Every stage script parses its flags once into typed configs: each flag lands in a config field of its name,
and the run record keeps every flag under its name (--log_level aside), so args.json stays what the report and
the pipeline read."""

from __future__ import annotations

import dataclasses

import pytest

import lambeq_encoder
import prepare_classical_benchmarks
import quantize_lambeq_embeddings
import train_classical_baselines
import train_quixer_hybrid
from quixer_rna.classical_tokens import RawTokensConfig
from quixer_rna.cli import check_repeated, config_from_args, config_record, run_record
from quixer_rna.encoding.stage import EncodeConfig
from quixer_rna.errors import UserError
from quixer_rna.markov import MarkovConfig
from quixer_rna.models.quixer import QuixerConfig
from quixer_rna.ngram import NgramConfig
from quixer_rna.progress import Every
from quixer_rna.quantization import QuantizeConfig
from quixer_rna.training.config import TrainConfig, TrainerStageConfig


def _dests(parser) -> list[str]:
    return [action.dest for action in parser._actions if action.dest != "help"]


@pytest.mark.parametrize("script, cls, argv, expected", [
    (quantize_lambeq_embeddings, QuantizeConfig,
     ["--embeddings_dir", "e", "--output_dir", "o", "--n_clusters", "7", "--seq_len", "32", "--write_pt",
      "--log_every", "5", "--seed", "3"],
     {"n_clusters": 7, "seq_len": 32, "write_pt": True, "log_every": Every(steps=5), "seed": 3}),
    (lambeq_encoder, EncodeConfig,
     ["--data_dir", "d", "--output_dir", "o", "--k", "6", "--max_kmers", "32", "--context", "stairs",
      "--device", "cpu", "--overwrite"],
     {"k": 6, "max_kmers": 32, "context": "stairs", "device": "cpu", "overwrite": True}),
    (prepare_classical_benchmarks, RawTokensConfig, ["--data_dir", "d", "--output_dir", "o", "--write_pt"],
     {"data_dir": "d", "write_pt": True}),
])
def test_a_stage_config_holds_every_flag_and_records_it_by_name(script, cls, argv, expected):
    parser = script.build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(cls, args)
    assert {name: getattr(config, name) for name in expected} == expected
    record = config_record(config)
    # The record keeps the flags in the parser's order (args.json as before), all but --log_level.
    assert list(record) == [dest for dest in _dests(parser) if dest != "log_level"]
    assert record == {name: value for name, value in vars(args).items() if name != "log_level"}


def test_the_quixer_trainer_flags_split_into_its_configs_and_the_record_keeps_them_all():
    parser = train_quixer_hybrid.build_parser()
    args = parser.parse_args(["--data_dir", "d", "--qubits", "3", "--epochs", "2", "--overwrite"])
    owners = [TrainerStageConfig, TrainConfig, QuixerConfig]
    fields = {item.name for cls in owners for item in dataclasses.fields(cls)}
    assert set(_dests(parser)) - fields == {"log_level"}
    stage = config_from_args(TrainerStageConfig, args, output_dir="runs/quixer")
    assert (stage.data_dir, stage.output_dir, stage.overwrite) == ("d", "runs/quixer", True)
    assert config_from_args(TrainConfig, args).epochs == 2 and config_from_args(QuixerConfig, args).qubits == 3
    record = run_record(args, output_dir="runs/quixer")
    assert list(record) == [dest for dest in _dests(parser) if dest != "log_level"]
    assert record["output_dir"] == "runs/quixer" and args.output_dir is None  # resolved, the namespace untouched


def test_the_classical_trainer_flags_split_into_its_configs():
    parser = train_classical_baselines.build_parser()
    args = parser.parse_args(["--data_dir", "d", "--model", "ngram", "--order", "4", "--max_markov_order", "6"])
    owners = [TrainerStageConfig, TrainConfig, NgramConfig, MarkovConfig, *train_classical_baselines.NEURAL.values()]
    fields = {item.name for cls in owners for item in dataclasses.fields(cls)}
    assert set(_dests(parser)) - fields == {"log_level", "model"}
    assert config_from_args(NgramConfig, args) == NgramConfig(order=4, ngram_counting="targets")
    assert config_from_args(MarkovConfig, args).max_markov_order == 6
    assert config_from_args(TrainConfig, args).epochs == 100  # the classical trainer's own default
    # Model sizes not given stay None in the record (the report groups runs by what was given).
    assert run_record(args)["hidden_dim"] is None and "log_level" not in run_record(args)


def test_a_flag_repeating_an_upstream_fact_must_agree_with_it():
    check_repeated("seq_len", None, 32, "windows hold 32 k-mers", "m.json")
    check_repeated("seq_len", 32, 32, "windows hold 32 k-mers", "m.json")
    check_repeated("max_kmers", 40, 32, "windows hold 32 k-mers", "m.json", at_most=True)
    with pytest.raises(UserError, match=r"^--seq_len 31: windows hold 32 k-mers \(m.json\); drop --seq_len"):
        check_repeated("seq_len", 31, 32, "windows hold 32 k-mers", "m.json")
    with pytest.raises(UserError, match=r"^--max_kmers 31: "):
        check_repeated("max_kmers", 31, 32, "windows hold 32 k-mers", "m.json", at_most=True)
