"""Measuring: the in-process runtime benchmark (`deploykit bench`), the HTTP load tester and the
measurement protocol they and the edge runner share (`deploykit.bench.protocol`, self-contained).

Submodules are imported where used, so importing this package costs nothing.
"""

__all__: list[str] = []
