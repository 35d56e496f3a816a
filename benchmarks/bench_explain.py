"""Explainer speed against the physical limit and against tf-keras-vis, side by side.

The limit is one compiled forward+backward pass to the input over the same batch (x the number
of noise samples or steps for SmoothGrad and Integrated Gradients). Each method's time is the
median of interleaved repetitions after a warm-up call (tracing excluded for everyone).

    .venv/bin/python benchmarks/bench_explain.py [--reps 7] [--text]

``--text`` adds a token-id model (Embedding -> Conv1D), attributed at the embedding's output,
against the limit of one compiled forward+backward pass to that output.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _reference import input_gradient_limit, interleaved_medians, reference_cnn  # noqa: E402

from keras_audit.explain import (  # noqa: E402
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradients,
    Saliency,
    ScoreCAM,
    SmoothGrad,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--text", action="store_true", help="also time a token-id text model")
    args = ap.parse_args()
    if args.text:
        text(args.reps, args.batch)
    model = reference_cnn(compiled=False)
    x = np.random.default_rng(0).random((args.batch, 32, 32, 3)).astype("float32")
    targets = np.arange(args.batch) % 10
    limit = input_gradient_limit(model, x)

    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency as VisSaliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore(list(targets))
    ours = {
        "gradcam": (GradCAM(model), 1),
        "gradcam++": (GradCAMPlusPlus(model), 1),
        "saliency": (Saliency(model), 1),
        "smoothgrad(20)": (SmoothGrad(model, num_samples=20, batch_size=2560), 20),
        "integrated_gradients(32)": (IntegratedGradients(model, steps=32, batch_size=4096), 32),
        "scorecam": (ScoreCAM(model, batch_size=2048), None),
    }
    vis = {
        "gradcam": lambda: Gradcam(model, model_modifier=ReplaceToLinear())(
            score, x, penultimate_layer="conv3"),
        "gradcam++": lambda: GradcamPlusPlus(model, model_modifier=ReplaceToLinear())(
            score, x, penultimate_layer="conv3"),
        "saliency": lambda: VisSaliency(model, model_modifier=ReplaceToLinear())(score, x),
        "smoothgrad(20)": lambda: VisSaliency(model, model_modifier=ReplaceToLinear())(
            score, x, smooth_samples=20),
    }
    jobs = {"limit": limit}
    for name, (exp, _) in ours.items():
        jobs[name] = (lambda e: lambda: e(x, targets))(exp)
    for name, fn in vis.items():
        jobs["tf-keras-vis " + name] = fn
    med = interleaved_medians(jobs, args.reps)
    print(f"batch {args.batch} of 32x32x3, {args.reps} interleaved reps, medians; "
          f"limit = 1 compiled fwd+bwd = {med['limit'] * 1e3:.1f} ms")
    print(f"{'method':28s} {'ms':>8s} {'/ limit':>9s} {'tf-keras-vis / ours':>20s}")
    for name, (_, mult) in ours.items():
        ratio = f"{med[name] / (med['limit'] * mult):9.2f}" if mult else f"{'-':>9s}"
        ref = med.get("tf-keras-vis " + name)
        vs = f"{ref / med[name]:20.1f}" if ref else f"{'-':>20s}"
        print(f"{name:28s} {med[name] * 1e3:8.1f} {ratio} {vs}")


def text(reps: int, batch: int) -> None:
    """Saliency and IG(32) at the embedding of a token-id Conv1D model, against the limit."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((200,), dtype="int32")
    emb = keras.layers.Embedding(5000, 64, name="embedding")
    h = keras.layers.Conv1D(64, 5, activation="relu")(emb(inp))
    h = keras.layers.GlobalMaxPooling1D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    x = np.random.default_rng(0).integers(1, 5000, (batch, 200)).astype("int32")
    xt = tf.constant(x)

    @tf.function
    def limit_pass(ids):
        e = emb(ids)
        with tf.GradientTape() as tape:
            tape.watch(e)
            h = model.layers[2](e)
            s = tf.reduce_sum(model.layers[4](model.layers[3](h)))
        return tape.gradient(s, e)

    jobs = {"limit": lambda: limit_pass(xt).numpy(),
            "saliency": (lambda e: lambda: e(x))(Saliency(model)),
            "integrated_gradients(32)": (lambda e: lambda: e(x))(
                IntegratedGradients(model, steps=32, batch_size=4096))}
    med = interleaved_medians(jobs, reps)
    print(f"text: batch {batch} of 200 token ids, limit = {med['limit'] * 1e3:.1f} ms")
    for name, mult in (("saliency", 1), ("integrated_gradients(32)", 32)):
        print(f"{name:28s} {med[name] * 1e3:8.1f} {med[name] / (med['limit'] * mult):9.2f}")


if __name__ == "__main__":
    main()
