#!/usr/bin/env python3
"""Stage 1: human RNA sequences as FASTA. With --source ncbi (the default) it reads NCBI's summary of
GRCh38_latest_rna (GRCh38_latest_rna_summary.csv: ID,Sequence_len,Description), picks the accession
classes in --prefixes, and fetches those RefSeq transcripts from NCBI E-utilities (efetch, nuccore,
FASTA) in batches, within NCBI's rate limits, retrying with backoff. Rerunning the same command
resumes: ids already in the FASTA or in missing_ids.txt are skipped and a partial record left by a
crash is cut off. With --source synthetic it writes mRNA-like synthetic transcripts offline instead.

The run record and the list of missing ids sit beside the FASTA, named after it (rna_sequences.fasta.args.json,
.metrics.json, .missing_ids.txt), so several downloads can share a folder (e.g. the one holding NCBI's CSVs).
The defaults are the seeds' paths: --csv GRCh38_genomic_dataset/GRCh38_latest_rna_summary.csv and --output
GRCh38_genomic_dataset/rna_sequences.fasta.

example:
  download_rna_sequences.py --max_sequences 1000 --email you@example.org
  download_rna_sequences.py --source synthetic --max_sequences 2000 --output synthetic/rna_sequences.fasta
"""

import argparse

from quixer_rna.cli import add_common_args, every, make_parser, nonnegative_float, nonnegative_int, positive_float, \
    positive_int, run_cli
from quixer_rna.ncbi import DEFAULT_PREFIXES, NCBI_EUTILS, run_ncbi
from quixer_rna.synthetic import run_synthetic


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--source", choices=("ncbi", "synthetic"), default="ncbi",
                        help="'ncbi' fetches the ids in --csv from NCBI; 'synthetic' generates --max_sequences "
                             "mRNA-like transcripts offline (no --csv needed)")
    parser.add_argument("--output", default="GRCh38_genomic_dataset/rna_sequences.fasta",
                        help="FASTA file to write (70-column lines); its run record and missing-id list are written "
                             "beside it, named after it (<output>.args.json, .metrics.json, .missing_ids.txt)")
    parser.add_argument("--csv", default="GRCh38_genomic_dataset/GRCh38_latest_rna_summary.csv",
                        help="NCBI's GRCh38_latest_rna_summary.csv (plain or .gz) listing the ids to fetch "
                             "(--source ncbi)")
    parser.add_argument("--prefixes", nargs="+", default=list(DEFAULT_PREFIXES),
                        help="accession classes to fetch: NM_ curated mRNA; XM_ predicted mRNA, NR_ curated "
                             "non-coding, XR_ predicted non-coding are opt-in (space or comma separated)")
    parser.add_argument("--max_sequences", type=positive_int, default=None,
                        help="how many ids to fetch, None for all matching rows; with --source synthetic, how "
                             "many transcripts to generate (required there)")
    parser.add_argument("--sample", action="store_true",
                        help="with --max_sequences, take a random sample chosen by --seed instead of the first "
                             "rows (a larger sample with the same seed contains the smaller one)")
    ncbi = parser.add_argument_group("NCBI E-utilities")
    ncbi.add_argument("--email", default=None,
                      help="your e-mail, sent with each request as NCBI asks; None: taken from $NCBI_EMAIL")
    ncbi.add_argument("--api_key", default=None,
                      help="NCBI API key, raises the rate limit from 3 to 10 requests/s (args.json records only "
                           "whether one was given); None: taken from $NCBI_API_KEY")
    ncbi.add_argument("--batch_size", type=positive_int, default=200, help="ids per efetch request")
    ncbi.add_argument("--requests_per_second", type=positive_float, default=None,
                      help="request rate limit; None: NCBI's, 10/s with an API key, else 3/s")
    ncbi.add_argument("--max_retries", type=nonnegative_int, default=6,
                      help="retries of one request after HTTP 429 or 5xx, a timeout, a dropped connection or a "
                           "garbled answer; then the run stops and a rerun resumes")
    ncbi.add_argument("--retry_base_delay", type=nonnegative_float, default=1.0,
                      help="seconds before the first retry; doubles on each further retry (plus up to 25%% "
                           "jitter), never shorter than the server's Retry-After")
    ncbi.add_argument("--retry_max_delay", type=nonnegative_float, default=60.0,
                      help="cap in seconds on the exponential backoff (a server's Retry-After is still honoured)")
    ncbi.add_argument("--timeout", type=positive_float, default=60.0, help="seconds to wait for each request's answer")
    ncbi.add_argument("--eutils_url", default=NCBI_EUTILS,
                      help="base address of the E-utilities server (another address for a mirror or a test server)")
    parser.add_argument("--overwrite", action="store_true",
                        help="ncbi: start the FASTA and missing_ids.txt afresh instead of resuming; synthetic: "
                             "replace an existing FASTA instead of refusing")
    parser.add_argument("--log_every", type=every, default=every("60s"),
                        help="without a terminal, log progress every N ids or every Ns seconds")
    add_common_args(parser, overwrite=False)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.source == "synthetic":
        return run_synthetic(args)
    return run_ncbi(args)


def main(argv=None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
