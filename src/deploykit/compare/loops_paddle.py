"""PaddlePaddle: the same MLP and CNN as paddle.nn.Layer, a hand loop like PyTorch's."""

from __future__ import annotations

import time

import numpy as np

from deploykit.compare.trained import RunConfig, Trained

__all__ = ["train", "build"]


def build(net: str, num_classes: int = 10):
    import paddle
    from paddle import nn

    if net == "cnn":
        layers = [nn.Conv2D(1, 32, 3), nn.ReLU(), nn.AvgPool2D(2), nn.Conv2D(32, 64, 3), nn.ReLU(), nn.AvgPool2D(2),
                  nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, num_classes)]
    else:
        layers = [nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, num_classes)]
    return paddle.nn.Sequential(*layers)  # logits, like the torch models



def with_softmax(model):
    """What is exported: probabilities, like every other reference artifact."""
    import paddle

    class WithSoftmax(paddle.nn.Layer):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):  # paddle.jit reads the argument names: keep `self`, `x`
            return paddle.nn.functional.softmax(self.inner(x), axis=1)

    return WithSoftmax(model)


def train(variant, cfg: RunConfig, data) -> Trained:
    import paddle

    paddle.seed(cfg.seed)
    paddle.set_device("cpu")
    model = build(cfg.net)
    shape = (1, 28, 28) if cfg.net == "cnn" else (28, 28)
    xt = paddle.to_tensor(np.ascontiguousarray(data["x_train"].reshape(-1, *shape)))
    yt = paddle.to_tensor(data["y_train"].astype(np.int64))
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
    loss_fn = paddle.nn.CrossEntropyLoss()
    out = Trained([], [], [], predict=None, model=model, versions={"paddlepaddle": paddle.__version__})
    model.train()
    for epoch in range(cfg.epochs):
        order = data["order"][epoch].astype(np.int64)
        start = time.perf_counter()
        total, correct = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = paddle.to_tensor(order[i : i + cfg.batch_size])
            xb, yb = paddle.gather(xt, idx), paddle.gather(yt, idx)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            opt.clear_grad()
            total += float(loss) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        out.epoch_s.append(time.perf_counter() - start)
        out.train_loss.append(total / len(order))
        out.train_acc.append(correct / len(order))
    model.eval()

    def predict(xs):
        with paddle.no_grad():
            xs = paddle.to_tensor(np.ascontiguousarray(xs.reshape(-1, *shape)))
            return np.concatenate([paddle.nn.functional.softmax(model(xs[i : i + 1000]), axis=1).numpy()
                                   for i in range(0, len(xs), 1000)]).astype(np.float32)

    out.predict = predict
    return out
