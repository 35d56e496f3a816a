"""Training processes for the tf.distribute callback tests (run as subprocesses).

    python tests/_callbacks_workers.py mirrored LOG_DIR
    TF_CONFIG=... python tests/_callbacks_workers.py multiworker LOG_DIR

``mirrored``: MirroredStrategy over 2 logical CPU devices, Keras ``fit()`` with AuditCallback.
``multiworker``: MultiWorkerMirroredStrategy (one of 2 workers, from TF_CONFIG); Keras 3's
``fit()`` fails under it (keras-team/keras#20585), so a custom loop (``strategy.run`` +
``strategy.reduce``) drives the callbacks through ``keras.callbacks.CallbackList``.
Prints one JSON line: what the callbacks did on this process.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

EPOCHS, FREQ = 3, 2  # logged epochs: 0 and 2 (the last)


def main() -> None:
    mode, log_dir = sys.argv[1], sys.argv[2]
    import tensorflow as tf

    if mode == "mirrored":
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()

    import keras
    from _callbacks_data import shapes, tiny_cnn

    from keras_audit.callbacks import AuditCallback, is_chief

    x, y, xv, yv = shapes(n=160)
    with strategy.scope():
        model = tiny_cnn()
    audit = AuditCallback((xv, yv), log_dir, freq=FREQ, num_samples=4,
                          options={"filters": {"max_filters": 4}})
    if mode == "mirrored":
        model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=[audit])
        losses = []
    else:
        losses = custom_loop(strategy, model, audit, x, y, keras, tf)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "chief": is_chief(model),
        "logged": {k: cb.logged_epochs for k, cb in audit.callbacks.items()},
        "failures": [repr(f) for cb in audit.callbacks.values() for f in cb.failures],
        "traces": audit.trace_counts(),
        "losses": losses,
    }), flush=True)


def custom_loop(strategy, model, audit, x, y, keras, tf) -> list[float]:
    global_batch = 32
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
    with strategy.scope():
        optimizer = keras.optimizers.Adam(0.01)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist = strategy.experimental_distribute_dataset(ds.with_options(options))

    @tf.function
    def train_step(xb, yb):
        def step(xb, yb):
            with tf.GradientTape() as tape:
                per_sample = loss_fn(yb, model(xb, training=True))
                loss = tf.nn.compute_average_loss(per_sample, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        per_replica = strategy.run(step, args=(xb, yb))
        return strategy.reduce("SUM", per_replica, axis=None)

    callbacks = keras.callbacks.CallbackList([audit], model=model, epochs=EPOCHS)
    callbacks.on_train_begin()
    losses = []
    for epoch in range(EPOCHS):
        callbacks.on_epoch_begin(epoch)
        total, steps = 0.0, 0
        for xb, yb in dist:
            total += float(train_step(xb, yb))
            steps += 1
        losses.append(total / steps)
        callbacks.on_epoch_end(epoch, {"loss": losses[-1]})
    callbacks.on_train_end()
    return losses


if __name__ == "__main__":
    main()
