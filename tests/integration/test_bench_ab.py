"""`deploykit bench-ab` on real artifacts of the session's train-export run, through the real CLI entry:
two real worker processes per configuration, measured alternately."""

from deploykit.cli import main
from deploykit.results import ABResultsFile

QUICK = ["--rounds", "4", "--max-rounds", "8", "--window", "0.02"]


def test_same_folder_twice_is_compared_and_recorded(mnist_models, tmp_path, capsys):
    out = tmp_path / "ab.json"
    rc = main(["bench-ab", str(mnist_models / "torch-mlp"), str(mnist_models / "torch-mlp"),
               "--formats", "onnx", "--batch-sizes", "1,8", *QUICK, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err  # without --fail-on-regression only a failed worker exits 1
    results = ABResultsFile.model_validate_json(out.read_text())
    assert results.kind == "bench-ab" and results.settings["rounds"] == 4
    assert [(c.format, c.batch, c.threads) for c in results.comparisons] == [("onnx", 1, 1), ("onnx", 8, 1)]
    for c in results.comparisons:
        assert c.status == "ok", c.reason
        assert c.ratio_ci[0] <= c.ratio <= c.ratio_ci[1] and c.verdict in ("regression", "improvement", "within noise")
        assert 4 <= c.rounds <= 8 and c.stop_reason in ("narrow", "max_rounds") and c.cpu is not None
        for side in (c.baseline, c.candidate):
            assert len(side["window_p50s_us"]) == c.rounds and side["latency"]["samples"] == sum(side["window_calls"])
            assert side["runtime_version"] and side["python"]
    assert "interleaved" in capsys.readouterr().out


def test_a_slower_candidate_is_a_regression(mnist_models, tmp_path, capsys):
    # The CNN's ONNX artifact does ~13× the MLP's arithmetic (anchors: 49 µs against 12.6 µs at batch 1):
    # a ratio far above the 10 % margin, whatever a busy machine does to both sides alike.
    out = tmp_path / "ab.json"
    rc = main(["bench-ab", str(mnist_models / "torch-mlp"), str(mnist_models / "torch-cnn"),
               "--formats", "onnx", "--batch-sizes", "8", *QUICK, "--out", str(out), "--fail-on-regression"])
    assert rc == 1
    (c,) = ABResultsFile.model_validate_json(out.read_text()).comparisons
    assert (c.baseline_model, c.candidate_model, c.verdict) == ("torch-mlp", "torch-cnn", "regression")
    assert "1 regression(s): onnx b8" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(mnist_models, tmp_path, capsys):
    rc = main(["bench-ab", str(mnist_models / "torch-mlp"), str(mnist_models / "torch-mlp"),
               "--baseline-python", str(tmp_path / "nope" / "python"), "--out", str(tmp_path / "ab.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--baseline-python" in err
    assert not (tmp_path / "ab.json").exists()
    rc = main(["bench-ab", str(mnist_models), str(mnist_models / "torch-mlp"), "--out", str(tmp_path / "ab.json")])
    assert rc == 2 and "one model folder per side" in capsys.readouterr().err
