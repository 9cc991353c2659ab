r"""Throughput of the grain training pipeline alone: the images/s it delivers to the train step.

  python benchmarks/input_pipeline.py --config configs/demo.py [--batches 50]
      [--config.data.worker_threads=4 ...]

Builds (or opens) the config's data set, runs `input_pipeline.train_dataset` as the trainer does
(decode, random scale, crop, flip; every stream of the method) and times `--batches` batches after
a warm-up. Prints a markdown table: batches/s, images/s (all streams), and the steps/s it could
feed. Compare with `images/s` of benchmarks/train_step.py for the same config: the pipeline is not
the bottleneck while its images/s is well above the step's. In training, the trainer logs
`input_wait_ms`, the time each step waited for its batch.
"""

import time

from absl import app, flags
from ml_collections import config_flags

from cps_jax import datasets, input_pipeline

config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
flags.DEFINE_integer("batches", 50, "Timed batches (after 3 warm-up batches).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = FLAGS.config
    data = datasets.load(config.data)
    iterator = iter(input_pipeline.train_dataset(config, data))
    for _ in range(3):
        batch = next(iterator)
    images_per_batch = sum(v.shape[0] for k, v in batch.items() if k.startswith("image"))
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    seconds = time.perf_counter() - start
    h, w = config.data.crop_size
    rows = [
        ("data set", f"{config.data.name} ({config.data.labeled_fraction} labeled)"),
        ("streams", ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items())),
        ("worker threads", f"{config.data.worker_threads}"),
        ("batches/s (= steps/s it can feed)", f"{FLAGS.batches / seconds:.1f}"),
        (f"images/s at {h}x{w}", f"{FLAGS.batches * images_per_batch / seconds:.1f}"),
    ]
    print("| quantity | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
