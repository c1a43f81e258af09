"""The report's "Frameworks" section: compare-training records beside the same network's deployment
latency, and the source articles' published figures beside ours, labelled as theirs."""

from __future__ import annotations

__all__ = ["ARTICLE_FIGURES", "deployed_model", "framework_rows", "deploy_text"]

# Published figures of the articles this project grew from (docs/frameworks.md): never measured here.
ARTICLE_FIGURES = [
    {"what": "tf.keras MLP on MNIST, 10 epochs, Adam: Sequential / Functional / Subclassing test accuracy",
     "figure": "97.82 % / 98.06 % / 98.20 % (loss 0.0875 / 0.0813 / 0.0781)", "variants": "keras-sequential, "
     "keras-functional, keras-subclass (mlp)", "source": "source article: Keras model APIs compared"},
    {"what": "Keras MNIST CNN, seconds per epoch, against PaddlePaddle", "figure": "30+ s per epoch vs ~5 s",
     "variants": "keras-sequential vs paddle (cnn)", "source": "source article: framework speed comparison"},
    {"what": "CPU training speed across frameworks (LSTM, 2-conv CNN, CNN+LSTM)",
     "figure": "claim: TensorFlow fastest on CPU; PyTorch/MXNet on GPU; Keras slowest",
     "variants": "keras-*, torch, paddle", "source": "2018 framework comparison quoted by the articles"},
]


def deployed_model(variant: str, framework: str, net: str) -> str:
    """The train-export / compare-training model folder whose artifacts serve this variant's network."""
    if framework == "paddle":
        return f"paddle-{net}"
    if framework == "torch":
        return f"torch-{net}"
    if net == "cnn":
        return "keras-cnn"
    api = variant.removeprefix("keras-")
    return f"keras-{api}" if api in ("sequential", "functional", "subclass") else "keras-sequential"


def framework_rows(results_files, latency_rows) -> list:
    """One FrameworkRow per compare-training record, with the batch-1 p50 of each deployed format of its network."""
    from deploykit.report.schema import FrameworkRow

    rows = []
    for source_id, results in results_files:
        for r in results.training:
            own = f"{r.variant}-{r.net}"  # the variant's own folder (train-export --variants), else its network's
            model = own if any(lat.model == own for lat in latency_rows) else deployed_model(r.variant, r.framework, r.net)
            deploy: dict[str, float] = {}
            for lat in latency_rows:
                if lat.model == model and lat.batch == 1 and lat.status == "ok" and lat.latency is not None:
                    deploy.setdefault(lat.format, lat.latency.p50_us)
            rows.append(FrameworkRow(
                source=source_id, variant=r.variant, net=r.net, framework=r.framework, style=r.style,
                processes=r.processes, status=r.status, reason=r.reason, epochs=r.epochs,
                first_epoch_s=r.first_epoch_s, steady_epoch_s=r.steady_epoch_s,
                steady_epoch_s_range=r.steady_epoch_s_range, samples_per_s=r.samples_per_s,
                peak_rss_bytes=r.peak_rss_bytes, test_accuracy=r.test_accuracy, test_loss=r.test_loss,
                scaling=r.scaling, deploy_model=model, deploy_p50_us=deploy))
    return rows


def deploy_text(row) -> str:
    """'onnx 12.6 µs · tflite 8.1 µs' (batch-1 p50 of the network's artifacts), or '—'."""
    from deploykit.report.view import fmt_us

    return " · ".join(f"{fmt} {fmt_us(v)}" for fmt, v in sorted(row.deploy_p50_us.items(), key=lambda kv: kv[1])) or "—"
