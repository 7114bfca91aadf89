"""What DicomExampleGen records on its artifacts, and the one reader of it.

The counts are custom properties (so they are in ML Metadata, next to the data they describe)
and are written once, by the executor, from what Beam counted. Whoever needs them (the
evaluation report, `mspipe ingest`, the run summary) reads them here instead of re-reading
the TFRecords or the ledger. No TFX import: writers take a TFX Artifact, readers a TFX
Artifact or the ML Metadata Artifact proto it wraps (what a store query returns).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from components.dicom_example_gen.ledger import COUNT_PROPERTY_PREFIX as REJECTS_PREFIX

EXAMPLES_PREFIX = "examples_"                  # examples_<split>: slices
STUDIES_PREFIX = "studies_"                    # studies_<split>: studies with at least one slice
POSITIVE_STUDIES_PREFIX = "positive_studies_"  # positive_studies_<split>: those labelled MS
LABELLED_WITHOUT_SLICES = "labelled_studies_without_slices"
REJECTS_TOTAL = REJECTS_PREFIX + "total"


@dataclass(frozen=True)
class SplitSize:
    slices: int
    studies: int
    positive_studies: int  # label 1 (MS)


def record_split_sizes(examples: Any, sizes: Mapping[str, SplitSize],
                       labelled_studies_without_slices: int) -> None:
    for name, size in sizes.items():
        examples.set_int_custom_property(EXAMPLES_PREFIX + name, size.slices)
        examples.set_int_custom_property(STUDIES_PREFIX + name, size.studies)
        examples.set_int_custom_property(POSITIVE_STUDIES_PREFIX + name, size.positive_studies)
    examples.set_int_custom_property(LABELLED_WITHOUT_SLICES, labelled_studies_without_slices)


def _mlmd(artifact: Any):
    """The ML Metadata proto, from a TFX Artifact or as given."""
    return getattr(artifact, "mlmd_artifact", artifact)


def read_split_sizes(examples: Any) -> dict[str, SplitSize]:
    """Split name -> size, train first; raises ValueError when a count was never recorded."""
    proto = _mlmd(examples)

    def count(prefix: str, name: str) -> int:
        key = prefix + name
        if key not in proto.custom_properties:
            raise ValueError(f"the Examples artifact has no '{key}' property: it was not "
                             "written by this version of DicomExampleGen")
        return int(proto.custom_properties[key].int_value)

    split_names = json.loads(proto.properties["split_names"].string_value or "[]")
    sizes = {name: SplitSize(count(EXAMPLES_PREFIX, name), count(STUDIES_PREFIX, name),
                             count(POSITIVE_STUDIES_PREFIX, name)) for name in split_names}
    return dict(sorted(sizes.items(), key=lambda item: (item[0] != "train", item[0])))


def record_reject_counts(ledger: Any, counts: Mapping[str, int]) -> None:
    for reason, number in counts.items():
        ledger.set_int_custom_property(REJECTS_PREFIX + reason, number)
    ledger.set_int_custom_property(REJECTS_TOTAL, sum(counts.values()))


def read_reject_counts(ledger: Any) -> dict[str, int]:
    """Reason -> count, sorted by reason (the total is left out: it is their sum)."""
    return dict(sorted((key[len(REJECTS_PREFIX):], int(value.int_value))
                       for key, value in _mlmd(ledger).custom_properties.items()
                       if key.startswith(REJECTS_PREFIX) and key != REJECTS_TOTAL))
