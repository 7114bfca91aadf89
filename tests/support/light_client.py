"""Run one `mspipe` command in a process where TensorFlow's runtime and TFX cannot load.

    python tests/support/light_client.py predict --server ... FILE

A meta-path finder stands in front of the real ones: the modules named below still *resolve*
(`serving.api.protos` asks where the tensorflow package lives, to import its plain protobuf
modules), but *executing* one raises ImportError and records who asked, with the stack. When the
process exits, one line `LIGHT-CLIENT-REPORT {json}` on stderr lists the attempts and any
TensorFlow-runtime or TFX module found in sys.modules, so the test can say exactly which import
chain broke the rule even when some library caught the ImportError and carried on.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import sys
import traceback
from pathlib import Path

REPORT_PREFIX = "LIGHT-CLIENT-REPORT "
# TFX and the TFX libraries, by top-level package.
TFX_PACKAGES = ("tfx", "tfx_bsl", "tensorflow_model_analysis", "tensorflow_transform",
                "tensorflow_data_validation", "ml_metadata")


def is_heavy(name: str) -> bool:
    """TensorFlow's runtime (its package __init__, tensorflow.python.*) or any TFX module.

    tensorflow.core.* and tensorflow_serving.* protobuf modules are allowed: they are plain
    generated code that serving/api/protos.py imports without the runtime.
    """
    top = name.partition(".")[0]
    return (name == "tensorflow" or name.startswith(("tensorflow.python", "tensorflow.compiler"))
            or top in TFX_PACKAGES)


class _RefusingLoader(importlib.abc.Loader):
    def __init__(self, attempts: list[dict]):
        self.attempts = attempts

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        frames = [frame for frame in traceback.format_stack(limit=40)[:-1]
                  if "<frozen importlib" not in frame]
        self.attempts.append({"module": module.__name__, "stack": "".join(frames)})
        raise ImportError(f"a light client imported {module.__name__} (TensorFlow/TFX)")


class HeavyImportBlocker(importlib.abc.MetaPathFinder):
    """Finds heavy modules as the path finder would, but hands out a loader that refuses."""

    def __init__(self):
        self.attempts: list[dict] = []

    def find_spec(self, name, path=None, target=None):
        if not is_heavy(name):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _RefusingLoader(self.attempts)
        return spec


def heavy_modules_loaded() -> list[str]:
    """Heavy modules in sys.modules, ignoring protos.py's bare placeholder package."""
    return sorted(name for name, module in sys.modules.items()
                  if is_heavy(name) and getattr(module, "__file__", None) is not None)


def main(argv: list[str]) -> int:
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # run as a script: tests/support must not shadow installed packages
    blocker = HeavyImportBlocker()
    sys.meta_path.insert(0, blocker)
    atexit.register(lambda: print(REPORT_PREFIX + json.dumps(
        {"attempts": blocker.attempts, "loaded": heavy_modules_loaded()}),
        file=sys.stderr, flush=True))
    from mspipe.main import main as mspipe_main

    return mspipe_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
