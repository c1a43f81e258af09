"""Edge targets: will a TFLite (or ONNX) artifact load in a device's runtime (`edge check`), how fast
does it run there (`edge bench`, over SSH or emulated against a device profile), and getting the device
ready (`edge setup`) and artifacts made for it (`--edge-runtime`, `target`).

Modules: `runner` (the self-contained device runner, copied to the device with
`deploykit.bench.protocol`; its `Model`/`OnnxModel` are also what the runtime registry runs),
`transport` (local folder / SSH), `session` (one runner session), `envs` (isolated runtime
environments), `tflite_file` / `onnx_file` (what a file asks of a runtime), `compat` (verdicts and
actionable messages), `profiles` (device profiles), `target` (--edge-runtime), `setup`, `check`,
`bench`, `cli`.
"""

__all__: list[str] = []
