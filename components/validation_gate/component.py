"""DataValidationGate: ExampleValidator's anomalies in, a failed run out (work in executor.py).

Placed between ExampleValidator and the Trainer (`trainer.add_upstream_node(gate)`), so bad
data stops the run before any training time is spent.
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

from components.validation_gate import executor


class DataValidationGateSpec(types.ComponentSpec):
    """One input, ExampleValidator's `anomalies`; no parameters and no outputs."""

    PARAMETERS = {}
    INPUTS = {
        standard_component_specs.ANOMALIES_KEY:
            ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }
    OUTPUTS = {}


class DataValidationGate(base_component.BaseComponent):
    """Fails the run with one readable line per anomaly; passes silently on clean data."""

    SPEC_CLASS = DataValidationGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, anomalies: types.BaseChannel):
        super().__init__(spec=DataValidationGateSpec(anomalies=anomalies))
