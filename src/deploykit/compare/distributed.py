"""Distributed variants on loopback: MultiWorkerMirroredStrategy (TF_CONFIG) and PyTorch DDP (torchrun, gloo).

The global batch is the single-process batch size, split evenly across the processes, and the
processes share the thread budget (each pinned to its own share of the CPUs), so a run measures
what the same work costs when spread over processes. Across machines the same workers run with
other hosts in TF_CONFIG, or torchrun's --nnodes/--node-rank/--master-addr (docs/frameworks.md).

Worker entry point: `python -m deploykit.compare.distributed {tf|torch} SPEC OUT_PREFIX`.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["launch", "free_ports", "mwms_config", "torchrun_command"]


def free_ports(n: int) -> list[int]:
    """n loopback ports free now (bound, then released: another process could take one in between)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mwms_config(hosts: list[str], index: int) -> str:
    """TF_CONFIG for worker `index` of a cluster of `hosts` (host:port each)."""
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def torchrun_command(nproc: int, port: int, module_args: list[str], nnodes: int = 1, node_rank: int = 0,
                     master_addr: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--node-rank={node_rank}",
            f"--nproc-per-node={nproc}", f"--master-addr={master_addr}", f"--master-port={port}",
            "-m", "deploykit.compare.distributed", *module_args]


def launch(variant, spec_path: Path, run_dir: Path, env: dict, timeout: float) -> dict:
    """Start the variant's processes, wait, and merge their results into one child-style result."""
    n = variant.processes
    prefix = run_dir / "result"
    kind = "tf" if variant.framework == "keras" else "torch"
    logs = []
    start = time.perf_counter()
    if kind == "tf":
        hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
        procs = []
        for i in range(n):
            log = open(run_dir / f"log-worker{i}.txt", "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "deploykit.compare.distributed", "tf", str(spec_path), str(prefix)],
                env={**env, "TF_CONFIG": mwms_config(hosts, i)}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
    else:
        log = open(run_dir / "log-torchrun.txt", "w")
        logs.append(log)
        procs = [subprocess.Popen(torchrun_command(n, free_ports(1)[0], ["torch", str(spec_path), str(prefix)]),
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        for p in procs:
            p.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
    except subprocess.TimeoutExpired:
        for p in procs:  # the whole group: torchrun's workers would outlive their launcher
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        return {"status": "failed", "reason": f"{variant.name}: no result within {timeout:.0f} s (logs in {run_dir})"}
    finally:
        for log in logs:
            log.close()
    results = [json.loads(Path(f"{prefix}.rank{i}.json").read_text())
               for i in range(n) if Path(f"{prefix}.rank{i}.json").is_file()]
    if len(results) < n or any(r["status"] != "ok" for r in results):
        bad = next((r for r in results if r["status"] != "ok"), None)
        reason = bad["reason"] if bad else f"{n - len(results)} of {n} processes wrote no result " \
                                           f"(exit codes {[p.returncode for p in procs]}; logs in {run_dir})"
        return {"status": "failed", "reason": reason}
    chief = results[0]
    chief["peak_rss_bytes"] = sum(r["peak_rss_bytes"] for r in results)  # the whole job's memory
    chief["extra"]["per_process_peak_rss_bytes"] = [r["peak_rss_bytes"] for r in results]
    return chief


# -- workers ---------------------------------------------------------------------------------------

def _share(spec: dict, rank: int, world: int) -> int:
    """Pin this process to its share of the CPUs; returns its thread count."""
    from deploykit.compare.threads import apply_before_import

    per = max(1, spec["threads"] // world)
    cpus = sorted(os.sched_getaffinity(0))
    mine = [cpus[(rank * per + i) % len(cpus)] for i in range(per)]
    os.sched_setaffinity(0, mine)
    spec["thread_settings"] = apply_before_import(per, "", spec.get("backend"))
    return per


def _finish(spec, prefix, rank, trained_extra, epoch_s, losses, accs, predict, data, versions, threads):
    from deploykit.compare.trained import test_figures

    result = {"status": "ok", "epoch_s": epoch_s, "train_loss": losses, "train_accuracy": accs,
              "versions": versions, "threads": threads, "extra": trained_extra}
    probs = predict(data["x_test"])
    result["test_accuracy"], result["test_loss"] = test_figures(probs, data["y_test"])
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if rank == 0:
        from deploykit.compare.child import log_timing_and_test

        log_timing_and_test(spec["log_dir"], epoch_s, result["test_accuracy"], result["test_loss"])
    Path(f"{prefix}.rank{rank}.json").write_text(json.dumps(result))
    return result


def _tf_worker(spec: dict, prefix: str) -> None:
    config = json.loads(os.environ["TF_CONFIG"])
    rank, world = config["task"]["index"], len(config["cluster"]["worker"])
    os.environ["KERAS_BACKEND"] = "tensorflow"
    spec["backend"] = "tensorflow"
    threads = _share(spec, rank, world)
    import numpy as np

    from deploykit.compare.threads import apply_after_import
    from deploykit.runtimes.tensorflow_rt import import_tf

    tf = import_tf()
    settings = {**spec["thread_settings"], "set": apply_after_import(threads, True, False), "processes": world}
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    from deploykit.models import keras as km

    data = dict(np.load(spec["data"]))
    shape = (28, 28, 1) if spec["net"] == "cnn" else (28, 28)
    x, y = data["x_train"].reshape(-1, *shape), data["y_train"].astype(np.int64)
    batch = spec["batch_size"]
    with strategy.scope():
        model = km.build("sequential", spec["net"], 10, spec["seed"])
        opt = keras.optimizers.Adam()
        opt.build(model.trainable_variables)

    # A custom step under strategy.run: Keras 3's fit does not run under MultiWorkerMirroredStrategy
    # (keras-team/keras#20585, seen here as "Attempt to convert a value (PerReplica…)").
    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            probs = model(xb, training=True)
            per_sample = keras.losses.sparse_categorical_crossentropy(yb, probs)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=batch)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=tf.int64), yb), tf.float32))
        return loss, correct

    @tf.function
    def step(xb, yb):
        loss, correct = strategy.run(replica_step, args=(xb, yb))
        sum_ = tf.distribute.ReduceOp.SUM
        return strategy.reduce(sum_, loss, axis=None), strategy.reduce(sum_, correct, axis=None)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    steps = len(x) // batch  # the last partial global batch is dropped, as in DDP
    epoch_s, losses, accs = [], [], []
    for epoch in range(spec["epochs"]):
        order = data["order"][epoch]
        ds = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch, drop_remainder=True)
        dist = strategy.experimental_distribute_dataset(ds.with_options(options))
        start = time.perf_counter()
        total, correct = 0.0, 0.0
        for xb, yb in dist:
            loss, right = step(xb, yb)
            total += float(loss)
            correct += float(right)
        epoch_s.append(time.perf_counter() - start)
        losses.append(total / steps)
        accs.append(correct / (steps * batch))
    if rank == 0:
        from deploykit.compare.tblog import ScalarWriter

        with ScalarWriter(Path(spec["log_dir"]) / "train") as w:
            for epoch, (l, a) in enumerate(zip(losses, accs)):
                w.scalar("epoch_loss", l, epoch)
                w.scalar("epoch_accuracy", a, epoch)

    def predict(xs):
        xs = xs.reshape(-1, *shape)
        return np.concatenate([np.asarray(model(xs[i : i + 1000], training=False)) for i in range(0, len(xs), 1000)])

    _finish(spec, prefix, rank, {"strategy": "MultiWorkerMirroredStrategy, custom step (strategy.run)",
                                 "workers": world, "global_batch": batch, "dropped_samples": len(x) - steps * batch},
            epoch_s, losses, accs, predict, data, {"tensorflow": tf.__version__, "keras": keras.__version__}, settings)


def _torch_worker(spec: dict, prefix: str) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    threads = _share(spec, int(os.environ.get("LOCAL_RANK", rank)), int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from deploykit.compare.loops_torch import predictor, setup
    from deploykit.compare.threads import apply_after_import
    from deploykit.compare.trained import RunConfig
    from deploykit.train import torch_epoch

    settings = {**spec["thread_settings"], "set": apply_after_import(threads, False, True), "processes": world}
    dist.init_process_group("gloo")
    data = dict(np.load(spec["data"]))
    cfg = RunConfig(net=spec["net"], epochs=spec["epochs"], batch_size=spec["batch_size"], seed=spec["seed"],
                    threads=threads, log_dir=spec["log_dir"])
    model, _, loss_fn, xt, yt = setup(cfg, data)
    ddp = DDP(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    per = cfg.batch_size // world
    if per * world != cfg.batch_size:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} processes")
    # Every global batch is the single-process batch, split by rank; a last partial batch is dropped
    # (ranks must take the same number of steps).
    steps = len(xt) // cfg.batch_size
    epoch_s, losses, accs = [], [], []
    ddp.train()
    for epoch in range(cfg.epochs):
        order = data["order"][epoch][: steps * cfg.batch_size].reshape(steps, world, per)[:, rank].reshape(-1)
        start = time.perf_counter()
        loss, acc = torch_epoch(ddp, opt, loss_fn, xt, yt, torch.from_numpy(order.astype(np.int64)), per)
        epoch_s.append(time.perf_counter() - start)
        both = torch.tensor([loss, acc], dtype=torch.float64)
        dist.all_reduce(both)  # the mean over ranks: every rank saw an equal share
        losses.append(float(both[0]) / world)
        accs.append(float(both[1]) / world)
    if rank == 0:
        from deploykit.compare.tblog import without_tensorflow

        without_tensorflow()
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=f"{cfg.log_dir}/train")
        for epoch, (l, a) in enumerate(zip(losses, accs)):
            writer.add_scalar("epoch_loss", l, epoch)
            writer.add_scalar("epoch_accuracy", a, epoch)
        writer.close()
    _finish(spec, prefix, rank, {"strategy": "DistributedDataParallel (gloo)", "processes": world,
                                 "global_batch": cfg.batch_size, "dropped_samples": len(xt) - steps * cfg.batch_size},
            epoch_s, losses, accs, predictor(model, cfg.net), data, {"torch": torch.__version__}, settings)
    dist.destroy_process_group()


def main(argv: list[str]) -> int:
    kind, spec_path, prefix = argv
    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]))
    try:
        (_tf_worker if kind == "tf" else _torch_worker)(spec, prefix)
    except Exception as exc:  # noqa: BLE001 - recorded as this run's failure, with the traceback in the log
        import traceback

        traceback.print_exc()
        Path(f"{prefix}.rank{rank}.json").write_text(json.dumps({"status": "failed", "reason": f"rank {rank}: {exc}"[:500]}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
