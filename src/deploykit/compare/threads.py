"""One thread budget, stated in each framework's own knobs (the fairness the comparison needs).

Every child is pinned to the same N CPUs (sched_setaffinity), whatever its framework does with
threads; then each framework's own settings are set to N intra-op threads and 1 inter-op thread:
environment variables before the import (OpenMP/MKL, TensorFlow, XLA for JAX, Paddle's OpenMP),
the framework's API after it (TensorFlow `tf.config.threading`, `torch.set_num_threads`).
"""

from __future__ import annotations

import os

__all__ = ["apply_before_import", "apply_after_import"]


def apply_before_import(threads: int, framework: str, backend: str | None) -> dict:
    """Pin this process and set the environment; returns what was set, for the record."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    env = {
        "OMP_NUM_THREADS": str(threads),  # torch, paddle (MKL/oneDNN) and numpy's BLAS
        "MKL_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
    }
    if backend == "jax":
        # XLA:CPU has no intra-op count flag; with one thread its Eigen pool can be switched off,
        # otherwise the CPU pinning above is what bounds it.
        env["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                            if threads == 1 else "")
    for key, value in env.items():
        if value:
            os.environ[key] = value
    return {"cpus": cpus, "env": {k: v for k, v in env.items() if v}}


def apply_after_import(threads: int, uses_tf: bool, uses_torch: bool) -> dict:
    """Set the frameworks' thread APIs (before their first op); returns what they report."""
    done = {}
    if uses_tf:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        done["tensorflow"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                              "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    if uses_torch:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work already started in this process
            pass
        done["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    return done
