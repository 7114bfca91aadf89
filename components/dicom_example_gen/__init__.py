"""DicomExampleGen: a TFX ExampleGen for hospital DICOM folders (component.py, executor.py).

Imports are lazy on purpose: Beam workers import `file_to_examples` from this package and must
not pay for TFX / TensorFlow, which `component` pulls in.
"""
from __future__ import annotations

__all__ = ["DicomExampleGen", "RejectLedger"]


def __getattr__(name: str):
    if name in __all__:
        from components.dicom_example_gen import component
        return getattr(component, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
