"""The layer order of README "What is in here", checked on the source: no import cycles, and
nothing imports upward (function-level imports included: a lazy import is still a dependency).

    components.features/contract -> components.dicom -> components.synthetic
        -> TFX components -> pipeline
    serving.api -> serving.server | serving.client -> serving.rollout -> serving.web -> mspipe

serving.* may use components.features/contract/dicom only; components.* never imports serving
or mspipe; mspipe, the CLI adapters, sits on top and may import anything.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from support.import_graph import (Layer, cycle_edges, cycles, find_modules, import_graph,
                                  layer_of, layer_violations)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "pipeline", "serving", "mspipe", "schemas")

CONTRACT, DICOM, SYNTHETIC = "contract", "dicom library", "synthetic data"
TFX, PIPELINE = "TFX components", "pipeline"
API, SERVER, CLIENT, ROLLOUT, WEB, CLI = ("serving.api", "serving.server", "serving.client",
                                          "serving.rollout", "serving.web", "mspipe")
PURE = (CONTRACT, DICOM)  # what serving may use from components

LAYERS = (
    Layer(CONTRACT, ("components", "components.features", "components.contract", "schemas")),
    Layer(DICOM, ("components.dicom",), (CONTRACT,)),
    Layer(SYNTHETIC, ("components.synthetic",), PURE),
    Layer(TFX, ("components.atomic_pusher", "components.dicom_example_gen",
                "components.evaluation", "components.evaluation_report", "components.trainer",
                "components.validation_gate"), (*PURE, SYNTHETIC)),
    Layer(PIPELINE, ("pipeline",), (*PURE, SYNTHETIC, TFX)),
    Layer(API, ("serving", "serving.api"), PURE),
    Layer(SERVER, ("serving.server",), (*PURE, API)),
    Layer(CLIENT, ("serving.client",), (*PURE, API)),
    Layer(ROLLOUT, ("serving.rollout",), (*PURE, API, SERVER, CLIENT)),
    Layer(WEB, ("serving.web",), (*PURE, API, SERVER, CLIENT, ROLLOUT)),
    Layer(CLI, ("mspipe",), (*PURE, SYNTHETIC, TFX, PIPELINE, API, SERVER, CLIENT, ROLLOUT,
                             WEB)),
)


@pytest.fixture(scope="module")
def project_imports():
    edges = import_graph(ROOT, PACKAGES)
    assert edges, "the walk found no imports at all: wrong ROOT?"
    return edges


def test_every_project_module_has_a_layer():
    homeless = sorted(m for m in find_modules(ROOT, PACKAGES) if layer_of(m, LAYERS) is None)
    assert homeless == [], f"modules outside every layer (add them to LAYERS): {homeless}"


def test_no_import_cycles(project_imports):
    found = cycles(project_imports)
    for members in found:
        print("cycle:", " <-> ".join(members))
        for line in cycle_edges(project_imports, members):
            print("    ", line)
    assert found == [], f"{len(found)} import cycle(s), see the output above"


def test_nothing_imports_upward(project_imports):
    found = layer_violations(project_imports, LAYERS)
    for line in found:
        print("upward:", line)
    assert found == [], f"{len(found)} import(s) against the layer order:\n" + "\n".join(found)


def test_the_walk_finds_a_planted_cycle_and_a_lazy_upward_import(tmp_path):
    """The checks above can fail: a cycle and a function-level upward import are both seen."""
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    for package in ("low", "high"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "low" / "a.py").write_text("from low import b\n")
    (tmp_path / "low" / "b.py").write_text("def later():\n    from high.c import thing\n")
    (tmp_path / "high" / "c.py").write_text("from . import d\nimport low.a\nthing = 1\n")
    (tmp_path / "high" / "d.py").write_text("")
    layers = (Layer("low", ("low",)), Layer("high", ("high",), ("low",)))
    edges = import_graph(tmp_path, ("low", "high"))
    assert cycles(edges) == [["high.c", "low.a", "low.b"]]
    assert layer_violations(edges, layers) == ["low.b:2 (low) imports high.c (high)"]
