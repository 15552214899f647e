#!/usr/bin/env python3
"""Stage 1: sequences as FASTA.

--source ncbi (the default) reads NCBI's summary of GRCh38_latest_rna (GRCh38_latest_rna_summary.csv:
ID,Sequence_len,Description), picks the accession classes in --prefixes, and fetches those RefSeq
transcripts from NCBI E-utilities (efetch, nuccore, FASTA) in batches, within NCBI's rate limits,
retrying with backoff. Rerunning the same command resumes: ids already in the FASTA or in
missing_ids.txt are skipped and a partial record left by a crash is cut off. The run record and the
list of missing ids sit beside the FASTA, named after it (rna_sequences.fasta.args.json, .metrics.json,
.missing_ids.txt), so several downloads can share a folder (e.g. the one holding NCBI's CSVs). The
defaults are the seeds' paths: --csv GRCh38_genomic_dataset/GRCh38_latest_rna_summary.csv and --output
GRCh38_genomic_dataset/rna_sequences.fasta.

--source ucsc fetches a genome assembly's soft-masked chromosome files (repeats in lowercase) from UCSC
into the folder --output, one <name>.fa.gz per chromosome as published, checked against the server's
md5sum.txt; without --chromosomes, the assembled chromosomes (names without '_': hg38 chr1-22, X, Y, M;
no _alt, _fix, _random or chrUn_ contigs). Rerunning the same command finishes a partial file with an
HTTP Range request. The folder also holds md5sum.txt of its files and the run record (args.json,
metrics.json); stage 2 reads the files as they are: prepare_autoregressive_data.py --fasta DIR/*.fa.gz.

--source synthetic writes mRNA-like synthetic transcripts offline.

example:
  download_rna_sequences.py --max_sequences 1000 --email you@example.org
  download_rna_sequences.py --source ucsc --assembly hg38 --chromosomes chr21,chr22 --output genomes/hg38
  download_rna_sequences.py --source synthetic --max_sequences 2000 --output synthetic/rna_sequences.fasta
"""

import argparse

from quixer_rna.cli import add_common_args, dataclass_values, every, make_parser, nonnegative_float, \
    nonnegative_int, positive_float, positive_int, run_cli
from quixer_rna.errors import UserError
from quixer_rna.http_fetch import RetryPolicy
from quixer_rna.ncbi import DEFAULT_PREFIXES, NCBI_EUTILS, NcbiConfig, run_ncbi
from quixer_rna.synthetic import SyntheticConfig, run_synthetic
from quixer_rna.ucsc import UCSC_URL, UcscConfig, run_ucsc

DEFAULT_FASTA = "GRCh38_genomic_dataset/rna_sequences.fasta"
DEFAULT_GENOME_FOLDER = "genomes/{assembly}"
UCSC_ONLY = ("assembly", "chromosomes")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--source", choices=("ncbi", "ucsc", "synthetic"), default="ncbi",
                        help="'ncbi' fetches the ids in --csv from NCBI; 'ucsc' fetches the chromosome files of "
                             "--assembly from UCSC; 'synthetic' generates --max_sequences mRNA-like transcripts "
                             "offline (no --csv needed)")
    parser.add_argument("--output", default=None,
                        help=f"ncbi, synthetic: the FASTA file to write (70-column lines; None: {DEFAULT_FASTA}); its "
                             "run record and missing-id list are written beside it, named after it "
                             "(<output>.args.json, .metrics.json, .missing_ids.txt). ucsc: a folder (None: "
                             f"{DEFAULT_GENOME_FOLDER.replace('{', '<').replace('}', '>')}) that receives one "
                             "<chromosome>.fa.gz per chromosome as UCSC publishes it, md5sum.txt, args.json and "
                             "metrics.json; give prepare_autoregressive_data.py --fasta <output>/*.fa.gz")
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
    ncbi = parser.add_argument_group("NCBI E-utilities (--source ncbi)")
    ncbi.add_argument("--email", default=None,
                      help="your e-mail, sent with each request as NCBI asks; None: taken from $NCBI_EMAIL")
    ncbi.add_argument("--api_key", default=None,
                      help="NCBI API key, raises the rate limit from 3 to 10 requests/s (args.json records only "
                           "whether one was given); None: taken from $NCBI_API_KEY")
    ncbi.add_argument("--batch_size", type=positive_int, default=200, help="ids per efetch request")
    ncbi.add_argument("--requests_per_second", type=positive_float, default=None,
                      help="request rate limit; None: NCBI's, 10/s with an API key, else 3/s")
    ncbi.add_argument("--eutils_url", default=NCBI_EUTILS,
                      help="base address of the E-utilities server (another address for a mirror or a test server)")
    ucsc = parser.add_argument_group("UCSC genome files (--source ucsc)")
    ucsc.add_argument("--assembly", default=None,
                      help="UCSC assembly name, e.g. hg38 (GRCh38), hg19 (GRCh37), mm39; required with --source ucsc")
    ucsc.add_argument("--chromosomes", default=None,
                      help="comma-separated names to fetch, e.g. chr21,chr22; None: the assembled chromosomes (names "
                           "without '_'; hg38: chr1-22, chrX, chrY, chrM), leaving out alternate haplotypes, fix "
                           "patches and unplaced contigs; 'all': every file the server's md5sum.txt lists")
    ucsc.add_argument("--ucsc_url", default=UCSC_URL,
                      help="base address of UCSC's goldenPath folder; files are read from <ucsc_url><assembly>/"
                           "chromosomes/ (another address for a mirror or a test server)")
    network = parser.add_argument_group("network (--source ncbi and ucsc)")
    network.add_argument("--max_retries", type=nonnegative_int, default=RetryPolicy.max_retries,
                         help="retries of one request after HTTP 429 or 5xx, a timeout, a dropped connection or a "
                              "garbled answer; then the run stops and a rerun resumes")
    network.add_argument("--retry_base_delay", type=nonnegative_float, default=RetryPolicy.retry_base_delay,
                         help="seconds before the first retry; doubles on each further retry (plus up to 25%% "
                              "jitter), never shorter than the server's Retry-After")
    network.add_argument("--retry_max_delay", type=nonnegative_float, default=RetryPolicy.retry_max_delay,
                         help="cap in seconds on the exponential backoff (a server's Retry-After is still honoured)")
    network.add_argument("--timeout", type=positive_float, default=RetryPolicy.timeout,
                         help="seconds to wait for each request's answer (and for each read of a file's bytes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="ncbi: start the FASTA and missing_ids.txt afresh instead of resuming; ucsc: fetch the "
                             "chosen files again; synthetic: replace an existing FASTA instead of refusing")
    parser.add_argument("--log_every", type=every, default=every("60s"),
                        help="without a terminal, log progress every N ids (ucsc: bytes) or every Ns seconds")
    add_common_args(parser, overwrite=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Resolve the source's default --output, then hand the source its typed settings; the run record keeps
    the flags with that output."""
    given = [name for name in UCSC_ONLY if getattr(args, name) is not None]
    if args.source != "ucsc" and given:
        raise UserError(f"--{given[0]}: only --source ucsc takes it (this is --source {args.source})")
    if args.source == "ucsc" and not args.assembly:
        raise UserError("--assembly: --source ucsc needs the assembly to fetch, e.g. --assembly hg38")
    default = DEFAULT_GENOME_FOLDER.format(assembly=args.assembly) if args.source == "ucsc" else DEFAULT_FASTA
    resolved = argparse.Namespace(**{**vars(args), "output": args.output or default})
    if args.source == "synthetic":
        return run_synthetic(SyntheticConfig(**dataclass_values(SyntheticConfig, resolved)), vars(resolved))
    network = RetryPolicy(**dataclass_values(RetryPolicy, resolved))
    if args.source == "ucsc":
        return run_ucsc(UcscConfig(**dataclass_values(UcscConfig, resolved), network=network), vars(resolved))
    return run_ncbi(NcbiConfig(**dataclass_values(NcbiConfig, resolved), network=network), vars(resolved))


def main(argv=None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
