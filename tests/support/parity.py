"""One target for the tests that must hold for the local server *and* the real TF Serving image.

`parity_target` yields a `ParityTarget`: by default a local server (`mspipe serve`'s
ModelServer, in process) on contract SavedModels, under a models.config of the same shape as
serving/deploy/models.config (one model, `specific` version 1, label `stable` -> 1). Given
`--tf-serving-grpc HOST:PORT` (and `--tf-serving-rest HOST:PORT`, `--tf-serving-model NAME`),
the same tests talk to that server instead, e.g. `docker compose -f serving/deploy/...` up on a
pushed model:

    pytest tests/integration/test_tf_serving_parity.py \
        --tf-serving-grpc 127.0.0.1:8500 --tf-serving-rest 127.0.0.1:8501

A test that needs to change the server (write versions, restart it with other flags) asks for
`target.require_local()`, which skips against a real deployment. A test module that needs other
server settings overrides the `parity_server_settings` fixture (a dict of ServerSettings fields).
Use it in a test module with `from support.parity import parity_server_settings, parity_target`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from serving.api.model_config import build_model_config, model_entry, write_model_config
from support.serving_fixtures import MODEL_NAME, free_port, running_server, save_version

GRPC_OPTION, REST_OPTION, MODEL_OPTION = "--tf-serving-grpc", "--tf-serving-rest", "--tf-serving-model"
# The deploy files' label on the first version (serving/deploy/models.config).
STABLE_LABEL, STABLE_VERSION = "stable", 1
# Fast polls for tests; the label rule and gRPC health as serving/deploy/docker-compose.yml
# sets them; REST on a free port (rest_api_port), as the deploy files serve it.
LOCAL_SETTINGS = {"poll_seconds": 0.2, "config_poll_seconds": 0.2,
                  "allow_version_labels_for_unavailable_models": True,
                  "enable_grpc_healthcheck_service": True}


@dataclass
class ParityTarget:
    """Where a parity test sends its calls; `server` is None for a real deployment."""
    grpc_address: str
    rest_address: str | None
    model_name: str
    server: object | None = None  # serving.server.grpc_server.ModelServer when local
    base_path: Path | None = None
    config_path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.server is not None

    def require_local(self, why: str = "changes the server") -> None:
        """Skip against a real deployment: the test must write models or restart the server."""
        if not self.is_local:
            pytest.skip(f"local server only: the test {why}")

    def require_rest(self) -> str:
        """The REST base URL (http://host:port), or skip when the target serves no REST."""
        if not self.rest_address:
            pytest.skip(f"no REST address (give {REST_OPTION} HOST:PORT)")
        return f"http://{self.rest_address}"

    @contextlib.contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        with grpc.insecure_channel(self.grpc_address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield channel


def write_deploy_shaped_config(root: Path, model_name: str = MODEL_NAME) -> tuple[Path, Path]:
    """Version 1 of the contract model under root/<name>, and a models.config of the deploy
    files' shape pointing at it; returns (base_path, config_path)."""
    base_path = root / model_name
    save_version(base_path, STABLE_VERSION)
    config = build_model_config([model_entry(model_name, base_path, versions=[STABLE_VERSION],
                                             labels={STABLE_LABEL: STABLE_VERSION})])
    config_path = root / "models.config"
    write_model_config(config_path, config)
    return base_path, config_path


def rest_address_of(server) -> str | None:
    """The local server's REST host:port when it serves REST (ModelServer.rest_address)."""
    address = getattr(server, "rest_address", None)
    return address() if callable(address) else address


@contextlib.contextmanager
def local_target(root: Path, **settings) -> Iterator[ParityTarget]:
    """A local server on a deploy-shaped models.config under root, as a ParityTarget."""
    base_path, config_path = write_deploy_shaped_config(root)
    settings = {**LOCAL_SETTINGS, "rest_api_port": free_port(), **settings}
    with running_server(config_path, **settings) as server:
        yield ParityTarget(grpc_address=server.address, rest_address=rest_address_of(server),
                           model_name=MODEL_NAME, server=server, base_path=base_path,
                           config_path=config_path)


@pytest.fixture(scope="module")
def parity_server_settings() -> dict:
    """Extra ServerSettings fields for the local server; override in a module to change."""
    return {}


@pytest.fixture(scope="module")
def parity_target(request, tmp_path_factory, parity_server_settings) -> Iterator[ParityTarget]:
    """The server the parity tests call: the given TF Serving, or a local server."""
    grpc_address = request.config.getoption(GRPC_OPTION)
    if grpc_address:
        yield ParityTarget(grpc_address=grpc_address,
                           rest_address=request.config.getoption(REST_OPTION),
                           model_name=request.config.getoption(MODEL_OPTION))
        return
    with local_target(tmp_path_factory.mktemp("parity"), **parity_server_settings) as target:
        yield target
