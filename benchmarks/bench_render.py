"""How long the callbacks' picture takes: explanation_grid of 16 samples of 32x32x3.

Prints milliseconds (median of repetitions, after one cold call that loads the colormap table
and the font): with the same captions every call, and with new captions every call (new scores,
as in training, where only the words that changed are rasterised again). Also the parts alone.

    .venv/bin/python benchmarks/bench_render.py [--reps 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from keras_audit import render

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, s = args.samples, args.size
    x = rng.normal(size=(n, s, s, 3)).astype(np.float32)
    maps = rng.random((n, s, s)).astype(np.float32)

    def new_captions() -> list[str]:
        return render.captions(true=rng.integers(0, 10, n), pred=rng.integers(0, 10, n),
                               confidence=rng.random(n), class_names=CLASSES)

    fixed = new_captions()
    start = time.perf_counter()
    picture = render.explanation_grid(x, maps, captions=fixed)
    cold = 1000 * (time.perf_counter() - start)
    fresh = [new_captions() for _ in range(args.reps)]
    fresh_iter = iter(fresh)

    print(f"explanation_grid of {n} samples {s}x{s}x3 -> picture {picture.shape}")
    print(f"  first call (colormap + font load): {cold:8.2f} ms")
    print(f"  same captions:                     "
          f"{median_ms(lambda: render.explanation_grid(x, maps, captions=fixed), args.reps):8.2f} ms")
    print(f"  new captions every call:           "
          f"{median_ms(lambda: render.explanation_grid(x, maps, captions=next(fresh_iter)), args.reps):8.2f} ms")
    print(f"  no captions:                       "
          f"{median_ms(lambda: render.explanation_grid(x, maps), args.reps):8.2f} ms")
    images = render.to_uint8_images(x)
    print("parts:")
    print(f"  to_uint8_images: {median_ms(lambda: render.to_uint8_images(x), args.reps):8.3f} ms")
    print(f"  colorize:        {median_ms(lambda: render.colorize(maps), args.reps):8.3f} ms")
    print(f"  overlay:         {median_ms(lambda: render.overlay(images, maps), args.reps):8.3f} ms")
    print(f"  png_bytes:       {median_ms(lambda: render.png_bytes(picture), args.reps):8.3f} ms")


if __name__ == "__main__":
    main()
