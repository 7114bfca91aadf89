"""What `tensorflow_model_server` does before its first load, from ServerSettings.

Two jobs kept out of grpc_server.py: where the first ModelServerConfig comes from
(--model_config_file, or --model_name/--model_base_path built in memory as TF Serving's
BuildSingleModelConfig does), and TensorFlow's thread pools (--tensorflow_*_parallelism), which
TensorFlow accepts only before its runtime starts.
"""
from __future__ import annotations

import logging
from pathlib import Path

from serving.api.model_config import (ModelServerConfig, build_model_config, model_entry,
                                      parse_model_config, read_model_config_text)
from serving.server.settings import ServerSettings

LOG = logging.getLogger(__name__)


def read_config_file(path: str | Path) -> tuple[ModelServerConfig, str]:
    """The parsed models.config and its text (the poller compares texts)."""
    text = read_model_config_text(path)
    return parse_model_config(text, str(path)), text


def initial_config(settings: ServerSettings) -> tuple[ModelServerConfig, str | None]:
    """The config to start with; the text is None in single-model mode (no file to poll)."""
    if settings.model_config:
        return read_config_file(settings.model_config)
    LOG.info("Building single TensorFlow model file config: model_name: %s model_base_path: %s",
             settings.model_name, settings.model_base_path)
    # TF Serving's single-model config: name, base path, platform, default policy (latest 1).
    return build_model_config([model_entry(settings.model_name, settings.model_base_path)]), None


def configure_tensorflow_threads(settings: ServerSettings) -> None:
    """Size TensorFlow's intra-/inter-op pools as asked (0 keeps TensorFlow's default).
    Only possible before TensorFlow's runtime starts: in a process that already ran
    TensorFlow (tests) the request is logged and ignored."""
    intra, inter = settings.intra_op_threads, settings.inter_op_threads
    if not intra and not inter:
        return
    import tensorflow as tf

    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as error:
        LOG.warning("TensorFlow thread pools already started, parallelism flags ignored: %s",
                    error)
