"""Edge targets: will a TFLite artifact load in a device's runtime (`edge check`), and how fast does it
run there (`edge bench`, over SSH or emulated against a device profile).

Modules: `runner` (the self-contained device runner, copied to the device with
`deploykit.bench.protocol`), `transport` (local folder / SSH), `session` (one runner session),
`envs` (isolated runtime environments), `tflite_file` (op versions in a .tflite), `compat` (verdicts
and actionable messages), `profiles` (device profiles), `check`, `bench`, `cli`.
"""

__all__: list[str] = []
