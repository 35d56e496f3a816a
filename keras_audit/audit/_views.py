"""What the audit explains and evaluates on models that are not one float input and one output.

Several inputs: the explanations (gallery, SHAP, LIME, quality) explain one input, the
*explained input* (the first image input, else the first input), with the other inputs held
fixed at a reference value (their mean over the audited samples; the element-wise median for
integer inputs). Several outputs: one output, ``run(output=...)`` (the first by default), is
explained and evaluated; performance also evaluates every labelled output.

Both come down to an *explained view*: a functional Keras model of the explained input alone
with the explained output alone, built from the model's own layers (shared live weights), so
every single-input analysis runs on it unchanged. For uint8 inputs the view takes float32 and
skips the model's input cast, so gradients (shap's, the engine's) reach the pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np

from keras_audit.explain.forward import InputSpec, output_names


@dataclass(frozen=True)
class OutputHead:
    """One output of the model as the audit reads it.

    Attributes:
        name: the output's name (``model.output_names`` order; ``output_<i>`` when unnamed).
        index: its position in the model's outputs.
        y: its labels as given, or None when the caller gave none for it.
    """

    name: str
    index: int
    y: np.ndarray | None


def explained_input(specs: list[InputSpec]) -> int:
    """The input the explanations explain: the first image input ``(H, W, C)``, else the first.
    """
    for i, s in enumerate(specs):
        if len(s.shape) == 3:
            return i
    return 0


def probe_outputs(model: keras.Model, arrays: list[np.ndarray]) -> list[str]:
    """The names of the model's outputs (one call on one sample when the graph has none)."""
    names = output_names(model)
    if names:
        return names
    feed = [a[:1] for a in arrays]
    out = model(feed if len(feed) > 1 else feed[0], training=False)
    if isinstance(out, Mapping):
        return [str(k) for k in out]
    if isinstance(out, list | tuple):
        return [f"output_{i}" for i in range(len(out))]
    return ["output_0"]


def output_index(output: int | str | None, names: list[str]) -> int:
    """The explained output's index (``None`` = 0).

    Raises:
        ValueError: ``output`` is not an index or a name of one of the model's outputs.
    """
    if output is None:
        return 0
    if isinstance(output, bool) or not isinstance(output, int | str):
        raise ValueError(f"output must be None, an output index or an output name; got "
                         f"{output!r}; the model's outputs are {names}")
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise ValueError(f"output index {output} is out of range; the model has "
                             f"{len(names)} output(s): {names}")
        return output
    if output not in names:
        raise ValueError(f"unknown output {output!r}; the model's outputs are {names}")
    return names.index(output)


def split_labels(y, names: list[str], explained: int) -> list[OutputHead]:
    """Labels as Keras takes them, one ``OutputHead`` per output.

    One output: ``y`` is its labels. Several: a dict keyed by output name (outputs left out
    are not evaluated) or a list/tuple in output order; the explained output needs labels.

    Raises:
        ValueError: a dict with unknown names, a list of the wrong length, or no labels for
            the explained output.
    """
    if len(names) == 1:
        if isinstance(y, Mapping):
            if set(y) != {names[0]}:
                raise ValueError(f"y is a dict with keys {sorted(map(str, y))}; the model's "
                                 f"output is {names}")
            y = y[names[0]]
        elif isinstance(y, list | tuple) and len(y) == 1 and np.ndim(y[0]) >= 1 and not (
                np.ndim(y[0]) == 1 and np.size(y[0]) == 1):
            y = y[0]
        return [OutputHead(names[0], 0, y)]
    if isinstance(y, Mapping):
        unknown = sorted(str(k) for k in y if k not in names)
        if unknown:
            raise ValueError(f"y has labels for unknown output(s) {unknown}; the model's "
                             f"outputs are {names}")
        heads = [OutputHead(n, i, y.get(n)) for i, n in enumerate(names)]
    elif isinstance(y, list | tuple) and len(y) == len(names) and all(
            np.ndim(v) >= 1 for v in y):
        heads = [OutputHead(n, i, v) for i, (n, v) in enumerate(zip(names, y))]
    else:
        raise ValueError(f"the model has {len(names)} outputs {names}: give y as a dict keyed "
                         f"by output name or a list in that order (as Keras's fit takes them)")
    if heads[explained].y is None:
        raise ValueError(f"y has no labels for the explained output {names[explained]!r}; "
                         f"give them, or pick another with output=")
    return heads


def held_values(specs: list[InputSpec], arrays: list[np.ndarray],
                explained: int) -> dict[str, np.ndarray]:
    """The reference value each other input is held at: its mean (median for integers)."""
    held = {}
    for i, (s, a) in enumerate(zip(specs, arrays)):
        if i == explained:
            continue
        if s.integer:
            held[s.name] = np.round(np.median(a, axis=0)).astype(a.dtype)
        else:
            held[s.name] = a.astype(np.float32).mean(axis=0)
    return held


class HeldInput(keras.layers.Layer):
    """A constant input: ``value`` repeated along the batch of the tensor it is called on."""

    def __init__(self, value: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.value = np.asarray(value)[None]

    def call(self, x):
        """``value`` once per row of ``x``."""
        c = keras.ops.convert_to_tensor(self.value)
        return keras.ops.repeat(c, keras.ops.shape(x)[0], axis=0)

    def compute_output_shape(self, input_shape):
        """``(batch, *value.shape)``."""
        return (input_shape[0], *self.value.shape[1:])


def needs_view(specs: list[InputSpec], n_outputs: int, explained: int) -> bool:
    """Whether the model is not already one (non-uint8) input and one output."""
    return len(specs) > 1 or n_outputs > 1 or specs[explained].dtype == "uint8"


def explained_view(model: keras.Model, specs: list[InputSpec], explained: int, output: int,
                   held: dict[str, np.ndarray], n_outputs: int) -> keras.Model:
    """The functional model ``explained input -> explained output`` (see the module doc).

    The model itself when it already is one; otherwise a view sharing its layers and weights.
    """
    from keras_audit.explain import GraphTap

    if not needs_view(specs, n_outputs, explained):
        return model
    spec = specs[explained]
    dtype = "float32" if not spec.integer or spec.dtype in ("uint8", "bool") else spec.dtype
    inp = keras.Input(spec.shape, dtype=dtype, name=spec.name)
    feed = [inp if i == explained else HeldInput(held[s.name], name=f"held_{s.name}")(inp)
            for i, s in enumerate(specs)]
    feed_arg = feed if len(feed) > 1 else feed[0]
    try:
        # the model's own layers called on the view's input: no input cast, names kept
        out, _ = GraphTap(model).run(feed_arg, linear=False)
        view = keras.Model(inp, _pick(out, output), name=f"{model.name}_explained")
    except Exception:  # e.g. a layer name repeated in a nested model: call the model whole
        out = model(feed_arg, training=False)
        view = keras.Model(inp, _pick(out, output), name=f"{model.name}_explained")
    return view


def _pick(out, index: int):
    if isinstance(out, Mapping):
        return list(out.values())[index]
    if isinstance(out, list | tuple):
        return out[index]
    return out


# -- batches of one or several inputs ----------------------------------------------------------

def model_batch(model: keras.Model, x, what: str = "x") -> np.ndarray | list[np.ndarray]:
    """``x`` checked against the model's inputs: one float32 array, or a list for several.

    Raises:
        ValueError: ``x`` does not fit the model's inputs.
    """
    from keras_audit.explain.forward import check_batch, check_inputs, model_inputs

    specs = model_inputs(model)
    if len(specs) == 1 and not isinstance(x, Mapping):
        return check_batch(model, x, what).astype(np.float32, copy=False)
    arrays = check_inputs(model, x, specs, what)
    return arrays if len(arrays) > 1 else arrays[0].astype(np.float32, copy=False)


def batch_len(x: np.ndarray | list[np.ndarray]) -> int:
    """The number of samples of a batch of one or several inputs."""
    return len(x[0]) if isinstance(x, list) else len(x)


def batch_take(x: np.ndarray | list[np.ndarray], index) -> np.ndarray | list[np.ndarray]:
    """``x[index]`` for every input of the batch."""
    return [a[index] for a in x] if isinstance(x, list) else x[index]
