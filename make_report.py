#!/usr/bin/env python3
"""Write the results report of a study: reads every run record under --runs (their args.json name the
stage and its role; model results and the other stages' metadata are read strictly), groups model results
by token track and by model over seeds, and bootstraps 95% intervals of each model's test cross-entropy, of
its gain over the unigram and of its paired difference with the best model (chosen on validation) by
resampling test genes and each model's seeds; a difference inside +-MARGIN (90% interval) is "equivalent".
Writes report.md, report.json and the figures (gain over the unigram, bits per nucleotide on raw k-mers,
data scaling, tuning curves) into --runs. Missing or failed stages are listed in the report, not fatal; a
stage file without a key the report reads is a one-line error naming the file and the key."""

from quixer_rna.cli import add_common_args, make_parser, positive_float, positive_int, run_cli
from quixer_rna.report import make_report
from quixer_rna.report.build import DEFAULT_MARGIN


def build_parser():
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--runs", required=True, help="folder holding the stage folders of one study (e.g. runs/<date>-<time>)")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=1000,
        help="bootstrap replicates (each resamples test genes and every model's seeds) per interval")
    parser.add_argument(
        "--margin", type=positive_float, default=DEFAULT_MARGIN,
        help="equivalence margin in nats per target, declared before the comparison: a model is 'equivalent' to "
             "the best when the 90%% interval of their paired difference lies inside +-MARGIN (recorded in the report)")
    add_common_args(parser, overwrite=False)
    return parser


def _run(args) -> int:
    report = make_report(args.runs, n_boot=args.bootstrap, seed=args.seed, margin=args.margin)
    rows = sum(len(track["rows"]) for track in report["tracks"])
    print(f"report: {args.runs}/report.md ({len(report['tracks'])} token track(s), {rows} model rows)")
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
