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

# Small and fast: 64x64 images, narrow convolutions. The 512x512 path has its own test.
SMALL_MODEL = ModelConfig(image_size=64, widths=(8, 16, 32), dense_units=32, dropout=0.3,
                          batch_size=16, epochs=12, learning_rate=2e-3)
# The synthetic lesion load CI can learn from: the conspicuous end of the generator (30-40
# lesions of 12-15 mm, brighter than typical FLAIR lesions). At 64x64 a pixel is ~3.7 mm and
# 8 training studies are few. Measured: the default mix (3-40 lesions of 3-15 mm) and 20-40
# lesions of 8-15 mm were not blessed by the pipeline (eval slice AUC 0.21 / 0.23 in training);
# in-process (same model and epochs, 3 study splits, held-out study AUC) 20-40 of 8-15 mm gave
# 0.25-0.63, 30-40 of 10-15 mm at +0.6-0.9 gave 0.38-0.94 (0.63-1.0 at 128x128), this 0.88-1.0.
# Through the pipeline this load gave study AUC 0.8125 (blessed, but under the honesty test's
# 0.95) and 0.79 with shuffled labels (40 studies): the honesty tests need more data (open).
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


def synthetic_config(root: Path, *, studies: int = 16, seed: int = 3, slices: int = 6,
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

