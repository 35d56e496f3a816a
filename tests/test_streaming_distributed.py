"""strategy=: the forward passes under MirroredStrategy over 2 logical CPU devices give the
same report as one device (a subprocess: logical devices must be set before TF starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_audit import audit

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((90, 8, 8, 3)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0.5).astype(np.int64)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    opts = {"performance": {"n_bootstrap": 10, "latency_repeats": 1},
            "pruning": {"sparsities": (0.0, 0.6), "per_layer": False, "drift": False}}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(20)   # last batch: 10
    for name, data, kw in (("arrays", x, {"y": y}), ("mirrored", ds, {"strategy": strategy}),
                           ("arrays_mirrored", x, {"y": y, "strategy": strategy})):
        r = audit.run(model, data, checks=("performance", "pruning"), out_dir=None,
                      options=opts, samples=5, **kw).content
        out[name] = {"perf": [r["performance"][k] for k in ("accuracy", "macro_f1", "ece",
                                                               "roc_auc_macro", "n_samples")],
                     "prune": [[g["accuracy"], g["loss"]] for g in r["pruning"]["global"]],
                     "idx": r["data"]["explained_samples"]["indices"]}
    json.dump(out, sys.stdout)
""")


def test_mirrored_strategy_gives_the_same_report(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    base = out["arrays"]
    assert base["perf"][-1] == 90
    for name in ("mirrored", "arrays_mirrored"):
        got = out[name]
        assert got["idx"] == base["idx"] and len(base["idx"]) == 5
        for a, b in zip(base["perf"], got["perf"]):
            assert abs(a - b) <= 1e-6, (name, base["perf"], got["perf"])
        for (a1, l1), (a2, l2) in zip(base["prune"], got["prune"]):
            assert abs(a1 - a2) <= 1e-6 and abs(l1 - l2) <= 1e-6, (name, base, got)
