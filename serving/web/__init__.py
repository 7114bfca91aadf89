"""The clinicians' web page (`mspipe web`): upload a study, see what the model saw and said.

`start_web(server_target, host, port, **options) -> WebHandle` lives in serving.web.app; it is
re-exported here lazily so that `mspipe web --help` stays instant.
"""
from __future__ import annotations

__all__ = ["WebHandle", "WebSettings", "start_web"]


def __getattr__(name: str):
    if name in ("WebHandle", "start_web"):
        from serving.web import app
        return getattr(app, name)
    if name == "WebSettings":
        from serving.web.settings import WebSettings
        return WebSettings
    raise AttributeError(f"module 'serving.web' has no attribute {name!r}")
