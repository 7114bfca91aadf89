"""Training throughput: the Trainer's TFRecord input pipeline vs. the same model on numpy arrays.

Writes synthetic slices in the exact TFRecord contract (gzip, sharded, as ExampleGen writes
them), then trains the same model through
  * `components.trainer.data.make_dataset` (what run_fn uses: TFX's reader, decode, weights), and
  * in-memory numpy arrays (`model.fit(x, y, sample_weight=...)`), the baseline,
for 1 + `--repeats` epochs each, after a warm-up of both; reports the best later epoch and
the ratio (goal >= 0.9: the input pipeline should not slow training down). The first epoch
of the TFRecord path includes filling the shuffle buffer (here: every image), which run_fn pays
once per training run, so it is shown apart from the steady epochs.

    .venv/bin/python bench/train.py --image-size 512 --images 256 --batch-size 16
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--images", type=int, default=256, help="images per epoch (rounded down to whole batches)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shards", type=int, default=4, help="TFRecord files to write")
    parser.add_argument("--repeats", type=int, default=3, help="steady epochs timed per input path")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def write_shards(directory: str, images, labels, shards: int) -> list[str]:
    """Synthetic examples split round-robin over `shards` gzip TFRecord files."""
    from components.trainer.synthetic_records import slice_example, write_gzip_tfrecord

    paths = []
    for shard in range(shards):
        examples = [slice_example(images[i], int(labels[i]), study=f"study-{i % 8}",
                                  slice_index=i) for i in range(shard, len(images), shards)]
        paths.append(write_gzip_tfrecord(
            os.path.join(directory, f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz"), examples))
    return paths


def epoch_seconds(model, epochs: int, *fit_args, **fit_kwargs) -> list[tuple[float, float]]:
    """(wall seconds, process CPU seconds) of each epoch of one `model.fit` call.

    CPU seconds (all threads) show what the input pipeline costs even when other work on the
    machine makes wall time noisy.
    """
    import tf_keras as keras

    seconds: list[tuple[float, float]] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            seconds.append((time.perf_counter() - self.start[0],
                            time.process_time() - self.start[1]))

    model.fit(*fit_args, epochs=epochs, verbose=0, callbacks=[EpochTimer()], **fit_kwargs)
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.images < args.batch_size or args.repeats < 1:
        raise SystemExit("--images must be >= --batch-size and --repeats >= 1")
    import numpy as np

    from components.trainer import data
    from components.trainer.config import ModelConfig
    from components.trainer.model import build_model
    from components.trainer.synthetic_records import blob_images
    from components.trainer.training import seed_everything
    from schemas import schema_path

    config = ModelConfig(image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
    seed_everything(config.seed)
    steps = args.images // args.batch_size
    images, labels = blob_images(steps * args.batch_size, args.image_size, seed=args.seed)
    work_dir = tempfile.mkdtemp(prefix="bench_train_")
    try:
        start = time.perf_counter()
        files = write_shards(work_dir, images, labels, args.shards)
        write_s = time.perf_counter() - start
        megabytes = sum(os.path.getsize(path) for path in files) / 2**20
        schema = data.load_schema(schema_path())
        factory = data.tfxio_dataset_factory
        from tfx.components.util import tfxio_utils  # noqa: F401  (import time is not I/O)

        start = time.perf_counter()
        counts = data.count_labels(files, schema, factory, "train")
        count_s = time.perf_counter() - start
        weights = counts.balanced_weights()

        def tfrecord_dataset():
            return data.make_dataset(files, config, schema, factory, training=True,
                                     num_epochs=None, class_weights=weights)

        targets = labels.astype(np.float32).reshape(-1, 1)
        sample_weights = np.asarray(weights, np.float32)[labels]
        model = build_model(config)
        # Trace the train function for both input paths before timing anything.
        model.fit(tfrecord_dataset(), steps_per_epoch=2, epochs=1, verbose=0)
        warm = 2 * args.batch_size
        model.fit(images[:warm], targets[:warm], sample_weight=sample_weights[:warm],
                  batch_size=args.batch_size, epochs=1, verbose=0)

        # Like run_fn: one repeating dataset, `steps` batches per epoch, one iterator.
        record_s = epoch_seconds(model, 1 + args.repeats, tfrecord_dataset(),
                                 steps_per_epoch=steps)
        numpy_s = epoch_seconds(model, 1 + args.repeats, images, targets,
                                sample_weight=sample_weights, batch_size=args.batch_size,
                                shuffle=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    per_epoch = steps * args.batch_size
    record_best = min(record_s[1:])
    numpy_best = min(numpy_s[1:])
    rows = [
        ("TFRecord, first epoch", record_s[0]),
        ("TFRecord, steady (run_fn's)", record_best),
        ("numpy, first epoch", numpy_s[0]),
        ("numpy, steady (baseline)", numpy_best),
    ]
    print(f"\nTraining throughput, image_size={args.image_size}, batch_size={args.batch_size}, "
          f"{per_epoch} images per epoch, steady = fastest of {args.repeats} later epochs; "
          f"per-slice examples; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {args.shards} gzip shards, {megabytes:.1f} MiB written in {write_s:.1f} s; "
          f"label-count pass before training (class weights): {count_s:.2f} s")
    print(f"  {'input path':<30} {'epoch s':>8} {'images/s':>9} {'CPU ms/image':>13}")
    for name, (wall, cpu) in rows:
        print(f"  {name:<30} {wall:>8.2f} {per_epoch / wall:>9.1f} "
              f"{1000 * cpu / per_epoch:>13.2f}")
    print("  every epoch, wall s: TFRecord " + " ".join(f"{w:.2f}" for w, _ in record_s)
          + " | numpy " + " ".join(f"{w:.2f}" for w, _ in numpy_s))
    print(f"  ratio TFRecord / numpy images/s, steady: {numpy_best[0] / record_best[0]:.3f} "
          f"(goal >= 0.9); all epochs: "
          f"{sum(w for w, _ in numpy_s) / sum(w for w, _ in record_s):.3f}; "
          f"CPU per image, steady: {record_best[1] / numpy_best[1]:.3f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
