"""Benchmark 2: single-image latency and batch-256 throughput of the article's CNN.

Contenders, alternated in one run: Keras ``model.predict``; the same Keras model called
eagerly on torch tensors (``model(x)``); the plain-torch module with the same weights
(``fastpath.from_keras``) in eager mode; and the ONNX export run by ONNX Runtime. All
must agree with each other; the weights do not affect speed, so the model is untrained.
Goal: batch-1 latency at least 10x better than ``model.predict``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import ratio_line, save


def build(device: str):
    import numpy as np
    import onnxruntime as ort
    import torch

    from bigmodel_utils import fastpath
    from bigmodel_utils.devices import seed_everything
    from bigmodel_utils.models import build_article_cnn

    seed_everything(0)
    model = build_article_cnn()
    net = fastpath.from_keras(model).to(device).eval()
    model.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)  # export needs a model that has been called
    onnx_path = Path(tempfile.mkdtemp()) / "article_cnn.onnx"
    model.export(str(onnx_path), format="onnx", verbose=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def keras_predict(x):
        return model.predict(x, verbose=0, batch_size=len(x))

    def keras_eager(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).to(device), training=False).cpu().numpy()

    def torch_eager(x):
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(x).permute(0, 3, 1, 2).to(device)), 1).cpu().numpy()

    def onnx(x):
        return sess.run(None, {name: x})[0]

    contenders = {"keras_predict": keras_predict, "keras_eager": keras_eager, "torch_eager": torch_eager, "onnxruntime": onnx}
    x = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    outs = {k: f(x) for k, f in contenders.items()}
    for k, o in outs.items():
        assert np.abs(o - outs["keras_predict"]).max() < 1e-4, k
    return contenders, x, onnx_path.stat().st_size


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    import torch

    if args.device == "cpu":
        torch.set_num_threads(2)
    contenders, x, onnx_bytes = build(args.device)
    lat = {k: [] for k in contenders}
    thr = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for k, f in contenders.items():  # alternate contenders within each round
            one = x[:1]
            f(one)
            t0 = time.perf_counter()
            for _ in range(args.calls):
                f(one)
            lat[k].append((time.perf_counter() - t0) / args.calls * 1e3)
            t0 = time.perf_counter()
            for _ in range(3):
                f(x)
            thr[k].append(3 * len(x) / (time.perf_counter() - t0))
    summary = {k: {"batch1_ms": statistics.median(lat[k]), "batch256_images_per_s": statistics.median(thr[k])} for k in contenders}
    for k, s in summary.items():
        print(f"{k:14s} batch-1 latency {s['batch1_ms']:8.3f} ms   batch-256 throughput {s['batch256_images_per_s']:9.0f} img/s")
    best = min((k for k in contenders if k != "keras_predict"), key=lambda k: summary[k]["batch1_ms"])
    verdict = ratio_line(f"batch-1 latency, {best} vs model.predict", summary["keras_predict"]["batch1_ms"], summary[best]["batch1_ms"], 10)
    print(verdict)
    result = {"device": args.device, "onnx_bytes": onnx_bytes, "summary": summary, "raw_ms": lat, "verdicts": [verdict]}
    save("inference" + ("" if args.device == "cpu" else f"_{args.device}"), result)
    return result


if __name__ == "__main__":
    main()
