"""HTTP load testing (`deploykit loadtest`): the CLI side (command), the load specification (spec), the
Locust engine process (engine) with its users (users), raw HTTP client (client), send timer (timer),
per-process recording (record), HDR histogram helpers (hdr) and request bodies (payload).

Submodules are imported where used, so importing this package costs nothing (Locust and gevent load
only inside the engine's process).
"""

__all__: list[str] = []
