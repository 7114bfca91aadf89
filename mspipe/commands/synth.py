"""`mspipe synth`: write a synthetic hospital DICOM export and print what it holds (counts only).

A non-empty --out (without --overwrite) or settings the generator refuses are usage errors
(exit 2, mspipe/main.py).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mspipe.errors import EXIT_USAGE, CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.synthetic import SynthSettings

    defaults = SynthSettings()
    parser.add_argument("--out", required=True, type=Path,
                        help="folder to create (must be missing or empty, see --overwrite)")
    parser.add_argument("--studies", type=int, default=defaults.studies,
                        help="labelled studies with files, classes balanced "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="one seed = one dataset (default %(default)s)")
    parser.add_argument("--slices", type=int, default=defaults.slices_per_series,
                        help="axial slices per study (default %(default)s)")
    parser.add_argument("--no-defects", action="store_true",
                        help="leave out the planted rejects (SR, capture, truncated, non-DICOM, "
                             "unlabeled and empty studies)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a non-empty --out folder first")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="also write the manifest (raw synthetic UIDs, expected rejects) as "
                             "JSON to this file; it must lie outside --out")


def run(args: argparse.Namespace) -> int:
    from components.synthetic import generate_dataset

    out = args.out.resolve()
    if args.manifest is not None and out in args.manifest.resolve().parents:
        raise CommandError(f"--manifest must lie outside --out ({out})", EXIT_USAGE)
    started = time.perf_counter()
    try:
        manifest = generate_dataset(out, studies=args.studies, seed=args.seed,
                                    slices_per_series=args.slices, overwrite=args.overwrite,
                                    plant_defects=not args.no_defects)
    except (ValueError, FileExistsError, NotADirectoryError) as error:
        raise CommandError(str(error), EXIT_USAGE) from error
    print(f"synthetic dataset written to {out} in {time.perf_counter() - started:.1f} s")
    print(manifest.summary())
    if args.manifest is not None:
        args.manifest.parent.mkdir(parents=True, exist_ok=True)
        args.manifest.write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
    return 0
