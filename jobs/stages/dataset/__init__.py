"""`gankit dataset`: dataset products, built by chaining the existing stages.

(a) Labeled synthetic dataset (DatasetConfig, run_dataset):

    sample (images + classifier)  ->  <out>/samples/      every row (the sample stage labels
                                                           the stored 8-bit PNG, exactly what
                                                           `gankit label` would compute)
    filter + assemble (part job)  ->  <out>/data/part-k   the rows of samples part k that pass
                                                           the filters, with prob_/label_ columns
    card                          ->  <out>/README.md     how it was generated, rates, schema
                                      <out>/dataset_info.json   the same facts as JSON

(b) Paired edit dataset (PairsConfig, run_pairs), the InterFaceGAN -> pix2pixHD route:

    sample (wp + classifier)      ->  <out>/samples/
    edit (keep_original)          ->  <out>/edits/        gankit.latent.editing along
                                                           fitted boundaries
    assemble (part job)           ->  <out>/data/part-k   (original, edited) pairs +
                                                           probabilities before and after,
                                                           one row per (sample, boundary,
                                                           strength)
    card                          ->  <out>/README.md, <out>/dataset_info.json

Both load as-is: `datasets.load_dataset(<out>)` (the card's `configs` points at data/*.parquet),
`load_dataset("parquet", data_files="<out>/data/*.parquet")`, `pandas.read_parquet("<out>/data")`.
Image columns are struct<bytes, path> PNG with `huggingface` schema metadata declaring them
`Image` features. Every stage is resumable, and a rerun of a finished dataset computes nothing;
once complete, data/ is self-contained and samples/ and edits/ may be deleted.

Filters of (a), in this order:
    min_confidence c   keep rows whose probability is >= c or <= 1 - c for every attribute
                       of `confidence_attributes` (default: all)
    balance a          keep as many positives (prob_a >= 0.5) as negatives: every row of the
                       minority class, and the majority-class rows with the smallest
                       (mix64(seed, sample_id), sample_id) keys, a deterministic subsample
The driver decides the rule from the logit columns alone (N x A float32 in memory) and the
workers apply the same pure function (gankit.dataset_filters.keep_mask) part by part; counts
go in the card.

Modules: common (what both products share), labeled (a), pairs (b), card (README.md and
dataset_info.json); this one holds the command.
"""
from __future__ import annotations

import dataclasses

from jobs import config
from jobs.stages.dataset.labeled import DatasetConfig, run_dataset
from jobs.stages.dataset.pairs import PairsConfig, run_pairs


def dataset_flags(p) -> None:
    """--pairs, then the flags of both products (one flag for an option both have)."""
    p.add_argument("--pairs", action="store_true", help="write the paired edit dataset")
    config.add_flags(p, DatasetConfig, unset=("count", "rows_per_part"))
    config.add_flags(p, PairsConfig, skip=names(DatasetConfig))
    for action in p._actions:           # say which product an option of one product is for
        only = ("labeled" if action.dest in names(DatasetConfig) - names(PairsConfig) else
                "pairs" if action.dest in names(PairsConfig) - names(DatasetConfig) else None)
        if only and action.option_strings:
            action.help = f"({only}) {action.help}"


def names(cls) -> set:
    return {f.name for f in dataclasses.fields(cls)}


def cmd_dataset(args) -> None:
    """Flags left unset take the chosen product's defaults (count, rows per part)."""
    if args.pairs:
        run_pairs(config.from_args(PairsConfig, args))
    else:
        run_dataset(config.from_args(DatasetConfig, args))


__all__ = ["DatasetConfig", "PairsConfig", "run_dataset", "run_pairs", "dataset_flags",
           "cmd_dataset"]
