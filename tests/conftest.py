"""Shared, session-scoped pipeline runs (each costs minutes; many tests read their artifacts)."""
from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_pipeline(tmp_path_factory):
    """One real pipeline run on a 16-study synthetic hospital export, model version 1 pushed."""
    from pipeline_fixtures import run_pipeline, synthetic_config

    config, manifest = synthetic_config(tmp_path_factory.mktemp("pipeline"))
    return run_pipeline(config, manifest)


@pytest.fixture(scope="session")
def retrained_pipeline(trained_pipeline):
    """The same pipeline trained again with another seed: version 2, judged against version 1."""
    from pipeline_fixtures import retrain

    return retrain(trained_pipeline, seed=trained_pipeline.config.seed + 1)


@pytest.fixture
def model_source(tmp_path):
    """Contract SavedModels published as versions (see rollout_fixtures.ModelSource)."""
    from rollout_fixtures import MODEL_NAME, ModelSource

    (tmp_path / "staging").mkdir()
    return ModelSource(tmp_path / MODEL_NAME, tmp_path / "staging")
