"""models.config: TF Serving's ModelServerConfig text proto, read and written in one place.

The local server, the real `tensorflow/serving` image (serving/deploy/) and the rollout tool all
use this exact file format, so nothing here invents fields: a config written here is a config
TF Serving accepts (`--model_config_file`), and vice versa.

Writes are atomic (temp file + rename): both servers poll the file, and must never parse half
of it.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from components.contract import DEFAULT_MODEL_NAME
from serving.api.protos import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig

TENSORFLOW_PLATFORM = "tensorflow"


@dataclass(frozen=True)
class DeploymentLayout:
    """Names and ports shared by the local server, the client and serving/deploy/ files."""
    model_name: str = DEFAULT_MODEL_NAME
    grpc_port: int = 8500
    rest_port: int = 8501
    container_model_root: str = "/models"  # where the tensorflow/serving image keeps models
    # A folder, not a single-file mount: write_model_config renames a new file into place, and
    # a single-file bind mount would keep showing the old inode to the server.
    container_config_dir: str = "/config"
    config_file_name: str = "models.config"
    batching_file_name: str = "batching_parameters.txt"

    def container_base_path(self, model_name: str | None = None) -> str:
        return f"{self.container_model_root}/{model_name or self.model_name}"

    @property
    def container_config_path(self) -> str:
        return f"{self.container_config_dir}/{self.config_file_name}"

    @property
    def container_batching_path(self) -> str:
        return f"{self.container_config_dir}/{self.batching_file_name}"


class ModelConfigError(ValueError):
    """A models.config that TF Serving would refuse; the message names the file and field."""


def parse_model_config(text: str, source: str = "models.config") -> ModelServerConfig:
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelConfigError(f"{source}: not a ModelServerConfig text proto: {error}") from None
    validate_model_config(config, source)
    return config


def read_model_config(path: str | os.PathLike) -> ModelServerConfig:
    return parse_model_config(read_model_config_text(path), os.fspath(path))


def read_model_config_text(path: str | os.PathLike) -> str:
    """The file's text (pollers compare texts); ModelConfigError naming the file if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ModelConfigError(f"{path}: cannot read model config: {error.strerror}") from None


def format_model_config(config: ModelServerConfig) -> str:
    return text_format.MessageToString(config)


def write_model_config(path: str | os.PathLike, config: ModelServerConfig) -> None:
    """Validate, then replace the file atomically so a polling server sees old or new, whole."""
    path = Path(path)
    validate_model_config(config, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(format_model_config(config))
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def model_entry(name: str, base_path: str | os.PathLike, *,
                versions: Iterable[int] | None = None, latest: int | None = None,
                all_versions: bool = False, labels: Mapping[str, int] | None = None) -> ModelConfig:
    """One model: `versions` -> specific policy, `latest` -> latest N, else TF Serving's default
    (latest 1). `labels` maps version_labels such as stable/canary to versions."""
    entry = ModelConfig(name=name, base_path=str(base_path), model_platform=TENSORFLOW_PLATFORM)
    set_version_policy(entry, versions=versions, latest=latest, all_versions=all_versions)
    set_version_labels(entry, labels or {})
    return entry


def build_model_config(entries: Iterable[ModelConfig]) -> ModelServerConfig:
    config = ModelServerConfig()
    config.model_config_list.config.extend(entries)
    validate_model_config(config)
    return config


def deployment_model_config(layout: DeploymentLayout = DeploymentLayout(), *,
                            versions: Iterable[int] = (1,),
                            labels: Mapping[str, int] | None = None) -> ModelServerConfig:
    """The models.config for the tensorflow/serving container (serving/deploy/models.config):
    container base path, specific versions, and labels (stable -> first version by default)."""
    versions = sorted(set(versions))
    labels = {"stable": versions[0]} if labels is None else labels
    return build_model_config([model_entry(layout.model_name, layout.container_base_path(),
                                           versions=versions, labels=labels)])


def find_model(config: ModelServerConfig, name: str) -> ModelConfig:
    for entry in config.model_config_list.config:
        if entry.name == name:
            return entry
    raise KeyError(f"model {name!r} is not in the model config")


def set_version_policy(entry: ModelConfig, *, versions: Iterable[int] | None = None,
                       latest: int | None = None, all_versions: bool = False) -> None:
    if sum(choice is not None and choice is not False
           for choice in (versions, latest, all_versions or None)) > 1:
        raise ValueError("choose one version policy: versions, latest or all_versions")
    entry.ClearField("model_version_policy")
    policy = entry.model_version_policy
    if versions is not None:
        policy.specific.versions.extend(sorted(set(int(v) for v in versions)))
    elif latest is not None:
        policy.latest.num_versions = int(latest)
    elif all_versions:
        policy.all.SetInParent()


def set_version_labels(entry: ModelConfig, labels: Mapping[str, int]) -> None:
    entry.version_labels.clear()
    for label, version in labels.items():
        entry.version_labels[label] = int(version)


def version_policy(entry: ModelConfig) -> tuple[str, tuple[int, ...] | int | None]:
    """('specific', versions) | ('latest', n) | ('all', None); unset means latest 1."""
    which = entry.model_version_policy.WhichOneof("policy_choice")
    if which == "specific":
        return "specific", tuple(entry.model_version_policy.specific.versions)
    if which == "all":
        return "all", None
    if which == "latest":
        return "latest", max(1, entry.model_version_policy.latest.num_versions)
    return "latest", 1


def aspired_versions(entry: ModelConfig, on_disk: Iterable[int]) -> set[int]:
    """The versions the policy wants served, among those present on disk (TF Serving's
    FileSystemStoragePathSource: a specific version missing on disk is simply not aspired)."""
    present = sorted(set(on_disk))
    kind, value = version_policy(entry)
    if kind == "specific":
        return set(value) & set(present)
    if kind == "all":
        return set(present)
    return set(present[-value:]) if present else set()


def validate_model_config(config: ModelServerConfig, source: str = "models.config") -> None:
    """The checks TF Serving makes before accepting a config (ValidateModelConfigList etc.)."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ModelConfigError(f"{source}: custom_model_config is not supported; "
                               "use model_config_list")
    seen: set[str] = set()
    for index, entry in enumerate(config.model_config_list.config):
        where = f"{source}: model_config_list.config[{index}]"
        if not entry.name:
            raise ModelConfigError(f"{where}: name is empty")
        if entry.name in seen:
            raise ModelConfigError(f"{where}: Illegal to list model {entry.name} multiple "
                                   "times in config list")
        seen.add(entry.name)
        if not entry.base_path:
            raise ModelConfigError(f"{where} ({entry.name}): base_path is empty")
        _validate_platform(entry, where)
        kind, value = version_policy(entry)
        if kind == "specific" and not value:
            raise ModelConfigError(f"{where} ({entry.name}): specific version policy lists "
                                   "no versions")
        for label, version in entry.version_labels.items():
            if not label:
                raise ModelConfigError(f"{where} ({entry.name}): empty version label")
            if version < 0:
                raise ModelConfigError(f"{where} ({entry.name}): label {label} points at "
                                       f"negative version {version}")


def _validate_platform(entry: ModelConfig, where: str) -> None:
    """TF Serving needs model_platform (or the deprecated model_type); only TensorFlow here."""
    if entry.model_type:  # deprecated enum: 1 = TENSORFLOW
        if entry.model_platform:
            raise ModelConfigError(f"{where} ({entry.name}): Illegal setting both model_type "
                                   "(deprecated) and model_platform")
        if entry.model_type != 1:
            raise ModelConfigError(f"{where} ({entry.name}): model_type choice "
                                   f"{entry.model_type} not supported")
        return
    if not entry.model_platform:
        raise ModelConfigError(f"{where} ({entry.name}): Illegal setting neither model_type "
                               "(deprecated) nor model_platform; use model_platform: "
                               f'"{TENSORFLOW_PLATFORM}"')
    if entry.model_platform != TENSORFLOW_PLATFORM:
        raise ModelConfigError(f"{where} ({entry.name}): model_platform "
                               f"{entry.model_platform!r} is not supported (tensorflow only)")
