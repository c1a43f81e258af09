"""Run inside the onnx2tf environment (deploykit.export.tflite_torch), never in deploykit's own: ONNX → float32 TFLite.

Self-contained on purpose: that environment holds onnx2tf and its pins (TensorFlow 2.19, NumPy 1.26,
onnx 1.19), not deploykit. Usage: python onnx2tf_child.py MODEL.onnx OUT_DIR RESULT.json [--keep-nchw NAME]
Writes RESULT.json: {"tflite": path, "versions": {...}, "seconds": s}, or {"error": "..."} (exit 1).
"""

import json
import os
import sys
import time


def main(argv):
    onnx_path, out_dir, result_path = argv[:3]
    keep = argv[argv.index("--keep-nchw") + 1] if "--keep-nchw" in argv else None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # converting is CPU work; no GPU probing
    t0 = time.perf_counter()
    try:
        from importlib.metadata import version

        import onnx2tf

        onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=out_dir, non_verbose=True,
                        verbosity="error", keep_ncw_or_nchw_or_ncdhw_input_names=[keep] if keep else None)
        stem = os.path.splitext(os.path.basename(onnx_path))[0]
        result = {"tflite": os.path.join(out_dir, stem + "_float32.tflite"),
                  "versions": {d: version(d) for d in ("onnx2tf", "tensorflow", "onnx")},
                  "seconds": round(time.perf_counter() - t0, 3)}
        code = 0 if os.path.exists(result["tflite"]) else 1
        if code:
            result = {"error": "onnx2tf finished without writing " + result["tflite"]}
    except Exception as exc:  # report any converter failure to the parent in one line
        result, code = {"error": "{}: {}".format(type(exc).__name__, " ".join(str(exc).split())[:500])}, 1
    with open(result_path, "w") as f:
        json.dump(result, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
