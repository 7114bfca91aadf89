"""Test tiers by folder, and the shared session-scoped pipeline runs.

Every test is marked with its tier (`unit`, `integration`, `e2e`) by the folder it lives in, so
`pytest -m "not e2e" tests` selects without per-file marks (`make test-fast` runs tests/unit by
path, which also spares collecting, and so importing, the TensorFlow-heavy tiers).
Nothing here changes the environment at import: TensorFlow's C++ log level comes from the
caller's environment (the Makefile exports TF_CPP_MIN_LOG_LEVEL=2), and the pipeline's salt
secret is set by the `pipeline_salt` fixture for the tests that run the pipeline.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Point the parity tests (tests/support/parity.py) at a real TF Serving deployment."""
    group = parser.getgroup("tf-serving", "parity tests against a real tensorflow_model_server")
    group.addoption("--tf-serving-grpc", metavar="HOST:PORT", default=None,
                    help="gRPC address of a running TF Serving: parity tests call it instead "
                         "of a local server")
    group.addoption("--tf-serving-rest", metavar="HOST:PORT", default=None,
                    help="its REST address (--rest_api_port)")
    group.addoption("--tf-serving-model", metavar="NAME", default="ms_mri",
                    help="the model it serves (models.config name; default ms_mri)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of its folder (tests/<tier>/...)."""
    for item in items:
        path = Path(item.path).resolve()
        tier = path.relative_to(TESTS).parts[0] if TESTS in path.parents else None
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def pipeline_salt():
    """The hashing salt's secret in the environment, where `salt="env:NAME"` points (as a
    deployment gives it: by reference); removed again when the session ends."""
    from support.pipeline_fixtures import TEST_SALT_SECRET, TEST_SALT_VARIABLE

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TEST_SALT_VARIABLE, TEST_SALT_SECRET)
        yield TEST_SALT_SECRET


@pytest.fixture(scope="session")
def trained_pipeline(tmp_path_factory, pipeline_salt):
    """One real pipeline run on a 48-study synthetic hospital export, model version 1 pushed."""
    from support.pipeline_fixtures import run_pipeline, synthetic_config

    config, manifest = synthetic_config(tmp_path_factory.mktemp("pipeline"))
    return run_pipeline(config, manifest)


@pytest.fixture(scope="session")
def retrained_pipeline(trained_pipeline):
    """The same pipeline trained again with another seed: version 2, judged against version 1."""
    from support.pipeline_fixtures import retrain

    return retrain(trained_pipeline, seed=trained_pipeline.config.model.seed + 1)


@pytest.fixture
def model_source(tmp_path):
    """Contract SavedModels published as versions (see rollout_fixtures.ModelSource)."""
    from support.rollout_fixtures import MODEL_NAME, ModelSource

    (tmp_path / "staging").mkdir()
    return ModelSource(tmp_path / MODEL_NAME, tmp_path / "staging")
