"""PyTorch variants: deploykit's hand loop (deploykit.train.torch_epoch), eager or torch.compile'd."""

from __future__ import annotations

import time

import numpy as np

from deploykit.compare.trained import RunConfig, Trained

__all__ = ["train", "setup", "predictor"]


def setup(cfg: RunConfig, data):
    """Model, optimizer, loss and the data as tensors (NCHW for the CNN): shared with DDP."""
    import torch

    from deploykit.models import torch as tm

    model = tm.build(cfg.net, 10, cfg.seed)  # seeds torch
    shape = (1, 28, 28) if cfg.net == "cnn" else (28, 28)
    xt = torch.from_numpy(np.ascontiguousarray(data["x_train"].reshape(-1, *shape)))
    yt = torch.from_numpy(data["y_train"].astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # Keras' Adam default
    return model, opt, torch.nn.CrossEntropyLoss(), xt, yt


def predictor(model, net: str):
    import torch

    shape = (1, 28, 28) if net == "cnn" else (28, 28)

    def predict(xs):
        model.eval()
        with torch.inference_mode():
            xs = torch.from_numpy(np.ascontiguousarray(xs.reshape(-1, *shape)))
            return np.concatenate([torch.softmax(model(xs[i : i + 1000]), 1).numpy()
                                   for i in range(0, len(xs), 1000)]).astype(np.float32)

    return predict


def train(variant, cfg: RunConfig, data) -> Trained:
    import torch

    from deploykit.train import torch_epoch

    model, opt, loss_fn, xt, yt = setup(cfg, data)
    forward = torch.compile(model) if variant.compile else model
    out = Trained([], [], [], predict=predictor(model, cfg.net), model=model,
                  versions={"torch": torch.__version__},
                  extra={"torch_compile": variant.compile})
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.from_numpy(data["order"][epoch].astype(np.int64))
        start = time.perf_counter()
        loss, acc = torch_epoch(forward, opt, loss_fn, xt, yt, order, cfg.batch_size)
        out.epoch_s.append(time.perf_counter() - start)
        out.train_loss.append(loss)
        out.train_acc.append(acc)
    model.eval()
    return out
