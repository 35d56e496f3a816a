"""Audit a tabular model: a small MLP on scikit-learn's breast cancer data, through ``audit.run``.

    .venv/bin/python examples/tabular_breast_cancer.py [--out runs/breast_cancer_report]

The report adapts to a tabular model: SHAP beeswarm and bar plots, LIME tabular explanations,
permutation importance and a global surrogate decision tree instead of image galleries.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from keras_audit.audit.report import run  # noqa: E402

CARD = {
    "owners": ["keras_audit examples"],
    "version": "0.1.0",
    "licence": "Apache-2.0",
    "description": "A two-layer perceptron that scores fine-needle-aspirate measurements as "
                   "benign or malignant (Wisconsin diagnostic breast cancer data).",
    "intended_use": "A worked example of auditing a tabular Keras model. Not for diagnosis.",
    "out_of_scope_uses": ["Any clinical decision.", "Populations other than the 569 patients "
                          "of the Wisconsin data set."],
    "limitations": ["569 samples from one hospital (1995).",
                    "Features are summary statistics of nuclei in digitised images."],
    "risks": "A false 'benign' delays treatment: read the recall of class 'malignant'.",
}


def build_mlp(n_features: int) -> keras.Model:
    """An MLP with one sigmoid unit (probability of class 1, 'benign' in scikit-learn's data)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(32, activation="relu", name="dense1"),
        keras.layers.Dropout(0.2, name="dropout"),
        keras.layers.Dense(16, activation="relu", name="dense2"),
        keras.layers.Dense(1, activation="sigmoid", name="benign"),
    ], name="breast_cancer_mlp")
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> None:
    """Train the MLP, audit it on the held-out rows, print where the report is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/breast_cancer_report", type=Path)
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=args.seed, stratify=data.target)
    scaler = StandardScaler().fit(x_train)
    x_train = scaler.transform(x_train).astype(np.float32)
    x_test = scaler.transform(x_test).astype(np.float32)

    model = build_mlp(x_train.shape[1])
    model.fit(x_train, y_train, epochs=40, batch_size=32, validation_split=0.1, verbose=0)
    print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    report = run(model, x_test, y_test, class_names=list(data.target_names),
                 feature_names=list(data.feature_names), background=x_train[:100],
                 out_dir=args.out, seed=args.seed, card=CARD, progress=True)
    for line in report.summary_lines():
        print(line)
    print(f"report: {args.out / 'report.html'}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
