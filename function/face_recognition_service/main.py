"""The original contract's entry points, kept working:

    uvicorn face_recognition_service.main:app --host 0.0.0.0 --port 8000
    python -m face_recognition_service.main

Both start the same server as ``make run`` (``face_recognition_service.server``).
"""

from __future__ import annotations

from typing import Any

from .server.main import get_app, main


def __getattr__(name: str) -> Any:
    # `app` is built (and the model loaded) when uvicorn asks for it, not on import.
    if name == "app":
        return get_app()
    raise AttributeError(name)


__all__ = ["main"]

if __name__ == "__main__":
    main()
