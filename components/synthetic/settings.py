"""What a synthetic hospital export looks like: scanners, fake patients, and the variety menu.

Everything that is a choice lives here, in frozen dataclasses, so a test or a benchmark can ask
for a different hospital without touching the generator. The fake patient strings are exported
(`PLANTED_PATIENT_STRINGS`) because the leak tests downstream search every output for them:
they are deliberately odd, so a hit can only mean a leak, never chance.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner of the hospital: its folder name, header identity and intensity habits.

    Intensities differ by scanner on real data (gain, contrast curve, noise, coil shading), and a
    model must not be allowed to learn the scanner instead of the disease: every scanner folder
    therefore holds both classes.
    """

    folder: str
    manufacturer: str
    model_name: str
    field_strength: float
    gain: float            # scanner units per unit of phantom signal
    gamma: float           # contrast curve applied to the phantom signal
    noise: float           # Rician noise sigma, relative to white matter ~0.5
    bias: float            # strength of the smooth coil shading
    signed: bool           # PixelRepresentation 1 (int16) instead of uint16
    file_pattern: str      # file name of instance n; no ".dcm" on some scanners, as in real exports
    # FLAIR-like signal of (white matter, grey matter, CSF, skull, scalp fat), per scanner:
    # grey brighter than white, CSF suppressed, as sequences and vendors tune it
    tissue_contrast: tuple[float, float, float, float, float] = (0.50, 0.62, 0.08, 0.05, 0.85)


DEFAULT_SCANNERS: tuple[ScannerProfile, ...] = (
    ScannerProfile("siemens_skyra", "SIEMENS", "Skyra", 3.0, gain=1400.0, gamma=1.0,
                   noise=0.025, bias=0.15, signed=False, file_pattern="MR.{n:04d}.dcm",
                   tissue_contrast=(0.50, 0.63, 0.07, 0.05, 0.85)),
    ScannerProfile("ge_signa", "GE MEDICAL SYSTEMS", "SIGNA Premier", 3.0, gain=2600.0,
                   gamma=0.85, noise=0.035, bias=0.25, signed=True, file_pattern="IM{n:05d}",
                   tissue_contrast=(0.48, 0.58, 0.10, 0.04, 0.80)),
    ScannerProfile("philips_ingenia", "Philips Medical Systems", "Ingenia", 1.5, gain=700.0,
                   gamma=1.15, noise=0.03, bias=0.2, signed=False, file_pattern="IM_{n:04d}.dcm",
                   tissue_contrast=(0.52, 0.66, 0.06, 0.06, 0.90)),
)


@dataclass(frozen=True)
class PlantedPatient:
    """Fake identifying data written into every file of one study (never real people).
    Values respect their VR limits (LO: 64 characters) so pydicom writes them silently."""

    name: str
    patient_id: str
    birth_date: str
    sex: str
    accession: str
    referring_physician: str
    study_date: str
    study_description: str


PLANTED_PATIENTS: tuple[PlantedPatient, ...] = (
    PlantedPatient("Doe^Jane", "MRN-4711-XYZ", "19530817", "F", "ACC-Q7Z-000913",
                   "Quackenbush^Hieronymus", "20190312",
                   "MRT Schaedel nativ - Pat. klagt ueber Taubheit li. Hand"),
    PlantedPatient("Mustermann^Erika^Zyx", "MRN-0815-QKW", "19671203", "F", "ACC-Q7Z-002277",
                   "Featherstonehaugh^Ottoline", "20200127",
                   "Kopf MRT - Sehstoerung re. Auge seit 3 Wochen (Pat. Mustermann)"),
    PlantedPatient("Smithee^Alan^Q", "MRN-2342-HJP", "19810227", "M", "ACC-Q7Z-004519",
                   "Pennywhistle^Barnaby", "20210705",
                   "Brain MRI w/o contrast - pt reports tingling feet, hx ON"),
    PlantedPatient("Zwölfer^Jürgen", "MRN-9001-VBN", "19590415", "M", "ACC-Q7Z-006802",
                   "Oyelaran-Whitcombe^Dorcas", "20180922",
                   "Schädel-MRT: Schwindel, Doppelbilder; Zuweisung Dr. Oyelaran"),
    PlantedPatient("Nakamura-Lindqvist^Sigrid", "MRN-5150-TRX", "19900611", "F",
                   "ACC-Q7Z-008144", "Thistlewood^Cornelius", "20220214",
                   "Head MR routine - follow-up, patient Nakamura-Lindqvist, bed 14B"),
    PlantedPatient("Okonkwo-Baptiste^Remy", "MRN-6502-LMD", "19740930", "M", "ACC-Q7Z-010388",
                   "Vandersloot^Philippa", "20230818",
                   "MRI brain: numbness L arm; call Dr. Vandersloot ext 4471"),
)

PLANTED_INSTITUTIONS: tuple[str, ...] = (
    "St. Elsewhere General Hospital",
    "Klinikum Musterstadt-Nordwest gGmbH",
    "Mercy Shadybrook Neurological Institute",
)


def _planted_strings() -> tuple[str, ...]:
    strings: list[str] = list(PLANTED_INSTITUTIONS)
    for patient in PLANTED_PATIENTS:
        strings += [patient.name, patient.patient_id, patient.birth_date, patient.accession,
                    patient.referring_physician, patient.study_date, patient.study_description]
    return tuple(strings)


PLANTED_PATIENT_STRINGS: tuple[str, ...] = _planted_strings()
"""Every identifying string the generator can write; none may ever appear in an output."""

TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEG2000Lossless,
    JPEGLSLossless,
)

# (rows, columns): the real export has square and non-square matrices from 192 to 768.
MATRIX_SIZES: tuple[tuple[int, int], ...] = (
    (256, 256), (384, 416), (512, 512), (192, 192), (748, 640), (320, 320), (768, 768),
    (448, 384),
)

# (slope, intercept) applied by the modality LUT; (1, 0) files carry no rescale tags at all.
RESCALES: tuple[tuple[float, float], ...] = ((1.0, 0.0), (2.5, 0.0), (0.25, -100.0))


# The conspicuous end of the lesion menu (SynthSettings overrides): dozens of 12-15 mm lesions,
# brighter than typical FLAIR lesions. Small models trained on a few studies learn it (the
# tests' pipeline fixtures, `mspipe demo`); the default, realistic mix needs more data than
# that (measured figures: tests/support/pipeline_fixtures.py).
CONSPICUOUS_LESIONS: dict = {"lesion_count": (30, 40), "lesion_diameter_mm": (12.0, 15.0),
                             "lesion_intensity": (0.8, 1.0)}


@dataclass(frozen=True)
class SynthSettings:
    """One synthetic hospital export. Defaults are small so `make demo` stays quick."""

    studies: int = 12                 # labelled studies with files; classes alternate, so an
    #                                   odd count has one control more than MS
    seed: int = 0
    slices_per_series: int = 8        # axial slices (frames) per study
    non_axial_slices: int = 3         # slices of each sagittal / coronal series
    unlabeled_slices: int = 3         # axial files of the study that is missing from labels
    plant_defects: bool = True
    scanners: tuple[ScannerProfile, ...] = DEFAULT_SCANNERS
    fov_mm: tuple[float, float] = (230.0, 250.0)
    lesion_diameter_mm: tuple[float, float] = (3.0, 15.0)   # MS lesions' long axis
    lesion_count: tuple[int, int] = (3, 40)   # MS lesion load in and around the imaged slab
    #                                           (log-uniform: a few to dozens)
    lesion_intensity: tuple[float, float] = (0.35, 0.6)     # added to white matter (~0.5)
    control_hyperintensity_share: float = 0.35  # controls with 1-3 small non-specific WM spots
    transfer_syntaxes: tuple[UID, ...] = TRANSFER_SYNTAXES

    def __post_init__(self) -> None:
        if self.studies < 2:
            raise ValueError(f"studies must be >= 2 (one per class), got {self.studies}")
        if self.slices_per_series < 1 or self.non_axial_slices < 1 or self.unlabeled_slices < 1:
            raise ValueError(
                "slices_per_series, non_axial_slices and unlabeled_slices must be >= 1")
        if not self.scanners:
            raise ValueError("at least one scanner is needed")

    @property
    def scanner_count(self) -> int:
        """Scanners actually used: each must hold at least one study of each class."""
        return max(1, min(len(self.scanners), self.studies // 2))
