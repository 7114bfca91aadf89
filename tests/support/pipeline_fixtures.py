"""Runs the real TFX pipeline on synthetic data for the tests that need a trained, pushed model.

Session-scoped fixtures in conftest.py call these once; the serving, rollout and pipeline tests
then share the artifacts (a real pipeline run costs minutes on 2 cores).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from components.synthetic import generate_dataset
from components.synthetic.settings import CONSPICUOUS_LESIONS
from components.trainer.config import ModelConfig
from pipeline.config import PipelineConfig
from pipeline.local_runner import run_local
from pipeline.run_summary import RunSummary

# Small and fast: 128x128 images, narrow convolutions. The 512x512 path has its own test.
# Sized on the synthetic MNI152 anatomy (measured in-process: the Trainer's model, half the
# studies for training of which a quarter held out for the threshold, held-out study AUC over
# 6 random study splits; 48 studies x 12 axial slices, CONSPICUOUS_LESIONS):
#   64x64, 12 epochs, no flips         mean 0.86  min 0.60
#   128x128, 12 epochs, no flips       mean 0.93  min 0.63   (20 epochs: 0.93 / 0.67)
#   128x128, 12 epochs, random flips   mean 0.98  min 0.90
#   128x128, 24 epochs, random flips   mean 1.00  min 1.00   <- these settings
#   the same with 32 studies           mean 0.95  min 0.83; 24 studies 0.90 / 0.69
#   the same with shuffled labels      mean 0.43  (chance; small eval sets spread widely)
# At 64x64 a pixel is ~3.7 mm, the size of a small lesion; at 128x128 ~1.9 mm.
# The generator's default, realistic lesion mix (3-40 lesions of 3-15 mm, dimmer) is not
# learnable at this size: 0.47 with these settings on 48 studies, 0.55 on 160 (2 splits).
SMALL_MODEL = ModelConfig(image_size=128, widths=(8, 16, 32), dense_units=32, dropout=0.3,
                          batch_size=16, epochs=24, learning_rate=2e-3, flip_left_right=True)
# The synthetic lesion load CI can learn from: the conspicuous end of the generator (30-40
# lesions of 12-15 mm, brighter than typical FLAIR lesions).
CI_LESIONS = CONSPICUOUS_LESIONS
# In-process Beam: the tests' datasets are tiny, worker start-up would dominate.
TEST_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# The hashing salt as a deployment should give it: a reference, the secret in the environment.
TEST_SALT_VARIABLE = "MSMRI_TEST_SALT"
TEST_SALT_SECRET = "test-secret-salt-7f3a9c"  # set by conftest's pipeline_salt fixture


@dataclasses.dataclass
class PipelineRun:
    config: PipelineConfig
    summary: RunSummary
    manifest: object  # components.synthetic.Manifest


def synthetic_config(root: Path, *, studies: int = 48, seed: int = 3, slices: int = 12,
                     model: ModelConfig = SMALL_MODEL, lesions: dict | None = None,
                     **overrides) -> tuple[PipelineConfig, object]:
    data_dir = root / "hospital"
    manifest = generate_dataset(data_dir, studies=studies, seed=seed, slices_per_series=slices,
                                **(CI_LESIONS if lesions is None else lesions))
    settings = dict(model=model, split_ratios=(("train", 0.5), ("eval", 0.5)),
                    beam_args=TEST_BEAM_ARGS, min_study_auc=0.8,
                    salt=f"env:{TEST_SALT_VARIABLE}")
    settings.update(overrides)
    config = PipelineConfig(data_dir=str(data_dir), labels_path=str(data_dir / "labels.csv"),
                            output_dir=str(root / "out"), **settings)
    return config, manifest


def run_pipeline(config: PipelineConfig, manifest) -> PipelineRun:
    summary = run_local(config, show_progress=False)
    return PipelineRun(config=config, summary=summary, manifest=manifest)


def retrain(run: PipelineRun, **model_changes) -> PipelineRun:
    """The same data and output folder with other training settings (a new model version)."""
    return run_pipeline(run.config.with_model(**model_changes), run.manifest)

