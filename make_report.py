#!/usr/bin/env python3
"""Write the results report of a study: reads every run record under --runs (their args.json name the
stage and its role; model results follow one schema), groups model results by token track and by model
over seeds (mean and standard deviation), bootstraps 95% intervals of each model's test cross-entropy, of
its gain over the unigram and of its paired difference with the best model by resampling transcripts, and
writes report.md, report.json and the figures (gain over the unigram, bits per nucleotide on raw k-mers,
data scaling) into --runs. Missing or failed stages are listed in the report, not fatal."""

from quixer_rna.cli import add_common_args, make_parser, positive_int, run_cli
from quixer_rna.report import make_report


def build_parser():
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--runs", required=True, help="folder holding the stage folders of one study (e.g. runs/<date>-<time>)")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=1000, help="bootstrap resamples (of transcripts) for each 95%% interval"
    )
    add_common_args(parser, overwrite=False)
    return parser


def _run(args) -> int:
    report = make_report(args.runs, n_boot=args.bootstrap, seed=args.seed)
    rows = sum(len(track["rows"]) for track in report["tracks"])
    print(f"report: {args.runs}/report.md ({len(report['tracks'])} token track(s), {rows} rows)")
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
