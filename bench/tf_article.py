"""The article's MNIST recipe as the article ran it: TensorFlow 2 with tf.keras.

Written for the benchmark (not the article's code): the same network, Adam,
categorical cross-entropy, batch 64, 5 epochs, on the same local MNIST arrays
(passed as an .npz file, so TensorFlow never downloads anything). Runs inside
the TensorFlow virtual environment that ``bench/mnist_time_to_accuracy.py``
creates. Prints one JSON line: images/s and, after each epoch, the cumulative
training seconds and the test accuracy (evaluation time excluded).
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(npz_path: str, epochs: int = 5, threads: int = 2, seed: int = 0) -> None:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed)
    with np.load(npz_path) as f:
        x, y, xt, yt = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    x = (x.astype("float32") / 255.0)[..., None]
    xt = (xt.astype("float32") / 255.0)[..., None]
    y1, yt1 = tf.keras.utils.to_categorical(y, 10), tf.keras.utils.to_categorical(yt, 10)
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.Flatten(),
        L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ])
    assert model.count_params() == 93_322
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    trained, checkpoints = 0.0, []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.fit(x, y1, epochs=1, batch_size=64, verbose=0)
        trained += time.perf_counter() - t0
        _, acc = model.evaluate(xt, yt1, verbose=0, batch_size=1000)
        checkpoints.append([epoch + 1, trained, float(acc)])
    print(json.dumps({"contender": "tensorflow", "tf": tf.__version__,
                      "images_per_second": epochs * len(x) / trained, "checkpoints": checkpoints}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
