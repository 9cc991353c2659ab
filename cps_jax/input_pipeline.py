"""grain pipelines: a labeled and an unlabeled training stream, zipped, and padded evaluation batches.

Every host uses the same seeds, shuffles the whole source, then keeps its own slice, so the hosts
together see each global batch exactly once. Augmentation randomness comes from grain's per-index
generator, so a stream is a pure function of (seed, index) and its iterator state is one integer.
"""

import numpy as np
import grain
import grain.experimental

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
    """IterDataset of dicts image_l, mask_l, image_u, mask_u (per-host batches of numpy arrays).

    mask_u is kept for diagnostics only; no loss reads it.
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
    lab = _stream(
        data.train,
        labeled,
        seed=2 * config.seed,
        global_batch=config.batch_size_labeled,
        batch_name="config.batch_size_labeled",
        **common,
    )
    unl = _stream(
        data.train,
        unlabeled,
        seed=2 * config.seed + 10_007,
        global_batch=config.batch_size_unlabeled,
        batch_name="config.batch_size_unlabeled",
        **common,
    )
    length = min(len(lab), len(unl))  # both are "infinite"; zip needs equal lengths
    zipped = grain.experimental.ZipMapDataset(parents=[lab[:length], unl[:length]]).map(
        lambda pair: {
            "image_l": pair[0]["image"],
            "mask_l": pair[0]["mask"],
            "image_u": pair[1]["image"],
            "mask_u": pair[1]["mask"],
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
):
    """Iterable of per-host batches {image, mask, weight, index}; the last is padded (weight 0), never dropped.

    Every host yields the same number of batches (the global count), so collective evaluation steps match.
    """
    per_host = per_host_batch(batch_size, process_count, "config.eval_batch_size")
    num_batches = -(-len(source) // batch_size)

    def load_batch(b):
        items, weights, indices = [], [], []
        for j in range(per_host):
            i = b * batch_size + process_index * per_host + j
            real = i < len(source)
            image, mask = _decode(source[i if real else 0], num_classes=num_classes, split=split)
            items.append(transforms.eval_transform(image, mask))
            weights.append(float(real))
            indices.append(i if real else -1)
        return {
            "image": np.stack([it["image"] for it in items]),
            "mask": np.stack([it["mask"] for it in items]),
            "weight": np.asarray(weights, np.float32),
            "index": np.asarray(indices, np.int32),
        }

    ds = grain.MapDataset.range(num_batches).map(load_batch)
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=worker_threads, prefetch_buffer_size=2 * worker_threads)
    )
