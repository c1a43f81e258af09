"""Measuring: the in-process runtime benchmark (`deploykit bench`, `deploykit bench-ab`) and the
measurement protocol it, the edge runner and the HTTP load tester (deploykit.loadtest) share
(`deploykit.bench.protocol`, self-contained).

Submodules are imported where used, so importing this package costs nothing.
"""

__all__: list[str] = []
