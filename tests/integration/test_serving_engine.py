"""The serving engine in process with the real ONNX predictor of a trained model: a lone request runs
at once as its own batch, and requests that arrive together still ride one batch (the lone-request
path must not stop batching: a first version ran every request alone at concurrency 32)."""

import asyncio
import gc

from deploykit.runtimes import load_artifact
from deploykit.serving.config import ServeSettings
from deploykit.serving.engine import Engine, ModelInfo
from deploykit.serving.model_input import ServedInput
from deploykit.serving.startup import prepare


def _engine(model_dir):
    p = prepare(ServeSettings(model=str(model_dir), format="onnx"))
    m = p.manifest
    info = ModelInfo(model=m.model, format=p.choice.format, runtime=p.entry.runtime, classes=tuple(m.classes),
                     model_dir=p.model_dir, artifact=p.artifact, served=ServedInput.from_spec(m.input))
    engine = Engine(info, max_batch_size=32, max_latency_ms=500, max_queue=1024, warmup_s=0.1, retry_after_s=1)
    return engine, lambda: load_artifact(p.model_dir, p.entry, p.manifest, device="cpu", threads=1)


def test_a_lone_request_is_its_own_batch_and_requests_arriving_together_share_one(mnist_models):
    thresholds = gc.get_threshold()  # the engine freezes the heap and raises them for a server's life

    async def scenario():
        engine, load = _engine(mnist_models / "torch-mlp")
        await engine.start(load)
        try:
            assert engine.ready, engine.error
            assert engine.inline  # microseconds per call: the case the lone-request path is for
            served = engine.info.served
            probs, compute_us, batch = await engine.infer(served.warmup_batch(1))
            assert batch == 1 and probs.shape == (1, 10) and compute_us > 0
            answers = await asyncio.gather(*(engine.infer(served.warmup_batch(1, seed=k)) for k in range(16)))
            batches = [b for _, _, b in answers]
            assert max(batches) > 1, batches
            # Each answer is its own input's: the same as that input alone.
            alone, _, _ = await engine.infer(served.warmup_batch(1, seed=5))
            assert (answers[5][0].argmax(1) == alone.argmax(1)).all()
        finally:
            engine.close()

    try:
        asyncio.run(scenario())
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
