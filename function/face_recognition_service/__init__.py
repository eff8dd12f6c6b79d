"""Stateless face embedding and comparison service."""

import os

# ONNX Runtime's telemetry writes a device id and an event queue under
# ~/.cache/Microsoft at import (and warns in colour where it cannot): a
# biometric service sends and keeps nothing of the sort. Set before anything
# here imports onnxruntime; the images set it too.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")

__version__ = "0.3.0"
