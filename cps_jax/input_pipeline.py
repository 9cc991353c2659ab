"""grain pipelines: a labeled and an unlabeled training stream, zipped, and padded evaluation batches.

Every host uses the same seeds, shuffles the whole source, then keeps its own slice, so the hosts
together see each global batch exactly once. Augmentation randomness comes from grain's per-index
generator, so a stream is a pure function of (seed, index) and its iterator state is one integer.
"""

import numpy as np
import grain
import grain.experimental

from cps_jax import inference, methods
from cps_jax.data import partitions, transforms


class Subset:
    """Random access to the examples of `source` at `indices`."""

    def __init__(self, source, indices):
        self.source, self.indices = source, np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]


def _decode(example, *, num_classes: int, split: str):
    image, mask = example["image"], example["mask"]
    ident = example["id"].decode() if isinstance(example["id"], bytes) else str(example["id"])
    transforms.validate_example(image, mask, num_classes=num_classes, source=f"{split} id={ident}")
    return image, mask[..., 0] if mask.ndim == 3 else mask


def _stream(
    source,
    indices,
    *,
    seed: int,
    global_batch: int,
    batch_name: str,
    process_index: int,
    process_count: int,
    data_config,
    num_classes: int,
    split: str,
) -> grain.MapDataset:
    def augment(example, rng):
        image, mask = _decode(example, num_classes=num_classes, split=split)
        return transforms.train_transform(
            image,
            mask,
            rng,
            crop_hw=tuple(data_config.crop_size),
            scales=tuple(data_config.scales),
            flip=data_config.flip,
        )

    # Augmentation is drawn per *global* index, so the global batch is the same for any host count.
    ds = grain.MapDataset.source(Subset(source, indices)).shuffle(seed=seed).repeat()
    ds = ds.random_map(augment, seed=seed + 1)
    per_host = per_host_batch(global_batch, process_count, batch_name)
    return _host_rows(ds, global_batch, per_host, process_index).batch(
        per_host, drop_remainder=True
    )


def _host_rows(ds: grain.MapDataset, global_batch: int, per_host: int, process_index: int):
    """This host's contiguous rows of each global batch: hosts' batches concatenated in process order
    are exactly the single-host global batch."""

    def global_index(j):
        return (j // per_host) * global_batch + process_index * per_host + j % per_host

    num_global_batches = len(ds) // global_batch
    return grain.MapDataset.range(num_global_batches * per_host).map(lambda j: ds[global_index(j)])


def per_host_batch(global_batch: int, process_count: int, name: str) -> int:
    if global_batch % process_count:
        raise ValueError(
            f"{name}: batch size {global_batch} must divide by the number of hosts "
            f"({process_count})"
        )
    return global_batch // process_count


def train_dataset(config, data, *, process_index: int = 0, process_count: int = 1):
    """IterDataset of per-host batches (dicts of numpy arrays): image_l, mask_l; for semi-supervised
    methods image_u, mask_u; for CutMix methods also image_u1, mask_u1, a second, independently
    shuffled unlabeled stream. The mask_u* are for diagnostics only; no loss reads them.
    """
    labeled, unlabeled = partitions.partition(
        data.train_ids(),
        fraction=None if config.data.labeled_list else config.data.labeled_fraction,
        labeled_list=config.data.labeled_list or None,
        seed=config.data.partition_seed,
    )
    common = dict(
        process_index=process_index,
        process_count=process_count,
        data_config=config.data,
        num_classes=data.num_classes,
        split=f"{data.name}/train",
    )
    streams = {
        "l": _stream(
            data.train,
            labeled,
            seed=2 * config.seed,
            global_batch=config.batch_size_labeled,
            batch_name="config.batch_size_labeled",
            **common,
        )
    }
    # The method says which streams it reads: "l", and "u" (and "u1") of unlabeled images.
    unlabeled_streams = [s for s in methods.get(config.method).streams if s != "l"]
    unlabeled_source, unlabeled = data.unlabeled_pool(unlabeled)  # + images without masks
    for i, name in enumerate(unlabeled_streams):
        streams[name] = _stream(
            unlabeled_source,
            unlabeled,
            seed=2 * config.seed + 10_007 * (i + 1),
            global_batch=config.batch_size_unlabeled,
            batch_name="config.batch_size_unlabeled",
            **common,
        )
    names = list(streams)
    length = min(len(ds) for ds in streams.values())  # all are "infinite"; zip needs one length
    zipped = grain.experimental.ZipMapDataset(parents=[streams[n][:length] for n in names]).map(
        lambda batches: {
            f"{field}_{name}": batch[field]
            for name, batch in zip(names, batches)
            for field in ("image", "mask")
        }
    )
    threads = int(config.data.worker_threads)
    return zipped.to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
    )


def eval_batches(
    source,
    *,
    batch_size: int,
    num_classes: int,
    split: str,
    process_index: int = 0,
    process_count: int = 1,
    worker_threads: int = 0,
    options: inference.InferenceOptions = inference.InferenceOptions(),
):
    """Iterable of per-host batches {image, mask, size, weight, index}; the last is padded (weight
    0), never dropped.

    Images of any sizes: each batch is padded bottom/right (image 0.0, mask IGNORE_LABEL) to a
    canvas, `inference.canvas_size` of its images (at least the sliding window, rounded up to
    `options.pad_multiple`); `size` is each image's own (height, width). Every host yields the same
    number of batches (the global count), so collective evaluation steps match.
    """
    per_host = per_host_batch(batch_size, process_count, "config.eval_batch_size")
    num_batches = -(-len(source) // batch_size)

    def load_batch(b):
        first = b * batch_size + process_index * per_host
        real = [i for i in range(first, first + per_host) if i < len(source)]
        decoded = [_decode(source[i], num_classes=num_classes, split=split) for i in real]
        sizes = [mask.shape[:2] for _, mask in decoded]
        canvas = inference.canvas_size(sizes, options)
        items = [transforms.eval_transform(im, m, pad_hw=canvas) for im, m in decoded]
        filler = per_host - len(items)  # past the end: blank images that count nothing
        return {
            "image": np.stack(
                [it["image"] for it in items] + [np.zeros((*canvas, 3), np.float32)] * filler
            ),
            "mask": np.stack(
                [it["mask"] for it in items]
                + [np.full(canvas, transforms.IGNORE_LABEL, np.int32)] * filler
            ),
            "size": np.asarray(sizes + [canvas] * filler, np.int32).reshape(per_host, 2),
            "weight": np.asarray([1.0] * len(items) + [0.0] * filler, np.float32),
            "index": np.asarray(real + [-1] * filler, np.int32),
        }

    ds = grain.MapDataset.range(num_batches).map(load_batch)
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=worker_threads, prefetch_buffer_size=2 * worker_threads)
    )
