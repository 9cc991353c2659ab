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


class Rows:
    """The examples of one stream: parts (source, indices, image_labeled, pixel_labeled) one after
    the other. `image_labeled` [len(indices)] bool: the image's classes are known (from its mask);
    `pixel_labeled` bool: the loss may read its mask. Row i -> (example, image_labeled,
    pixel_labeled)."""

    def __init__(self, parts):
        self.parts = [
            (source, np.asarray(ix), np.broadcast_to(np.asarray(tagged, bool), np.shape(ix)), bool(pixel))
            for source, ix, tagged, pixel in parts
        ]
        self.ends = np.cumsum([len(ix) for _, ix, _, _ in self.parts])

    def __len__(self):
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i):
        k = int(np.searchsorted(self.ends, i, side="right"))
        source, indices, tagged, pixel = self.parts[k]
        j = i - (int(self.ends[k - 1]) if k else 0)
        return source[int(indices[j])], bool(tagged[j]), pixel


def classes_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot uint8 [C] of the classes present in a mask (255 and other values skipped)."""
    values = mask[mask < num_classes]
    return (np.bincount(values.ravel(), minlength=num_classes)[:num_classes] > 0).astype(np.uint8)


def _decode(example, *, num_classes: int, split: str):
    image, mask = example["image"], example["mask"]
    ident = _ident(example)
    transforms.validate_example(image, mask, num_classes=num_classes, source=f"{split} id={ident}")
    return image, mask[..., 0] if mask.ndim == 3 else mask


def _ident(example) -> str:
    return example["id"].decode() if isinstance(example["id"], bytes) else str(example["id"])


def _image_level(example, mask, image_labeled: bool, tags: dict, num_classes: int):
    """The image-level labels a loss may read: from the mask of a pixel- or image-labeled image,
    else the data set's tags for it, else every class (unknown)."""
    if image_labeled:
        return classes_from_mask(mask, num_classes)
    tagged = tags.get(_ident(example))
    return tagged if tagged is not None else np.ones(num_classes, np.uint8)


def _stream(
    rows: Rows,
    *,
    seed: int,
    global_batch: int,
    batch_name: str,
    process_index: int,
    process_count: int,
    data_config,
    num_classes: int,
    split: str,
    tags: dict,
) -> grain.MapDataset:
    def augment(row, rng):
        example, image_labeled, pixel_labeled = row
        image, mask = _decode(example, num_classes=num_classes, split=split)
        classes = _image_level(example, mask, image_labeled, tags, num_classes)
        out = transforms.train_transform(
            image,
            mask,
            rng,
            crop_hw=tuple(data_config.crop_size),
            scales=tuple(data_config.scales),
            flip=data_config.flip,
        )
        return dict(out, classes=classes, pixel=np.asarray(pixel_labeled))

    # Augmentation is drawn per *global* index, so the global batch is the same for any host count.
    ds = grain.MapDataset.source(rows).shuffle(seed=seed).repeat()
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


def partition_sets(config, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel-labeled, without pixel labels, image-labeled among those) indices into data.train,
    as `config.data` partitions it (cps_jax/data/partitions.py)."""
    labeled, rest = partitions.partition(
        data.train_ids(),
        fraction=None if config.data.labeled_list else config.data.labeled_fraction,
        labeled_list=config.data.labeled_list or None,
        seed=config.data.partition_seed,
    )
    image_labeled, _ = partitions.image_labeled(
        len(data.train), labeled, config.data.image_labeled_fraction, config.data.partition_seed
    )
    return labeled, rest, image_labeled


def train_dataset(config, data, *, process_index: int = 0, process_count: int = 1):
    """IterDataset of per-host batches (dicts of numpy arrays), per stream the method reads
    (methods.STREAMS): image_s [N,H,W,3], mask_s [N,H,W], classes_s [N,C] (image-level labels:
    from the mask of pixel- and image-labeled images, the data set's tags, else all ones) and
    pixel_s [N] (True: the image is pixel-labeled).

      l   the pixel-labeled images;
      u   (and u1, shuffled independently) the images without pixel labels, image-labeled or not;
      w   the images with image-level labels, pixel-labeled ones included (their masks given).

    The masks of images that are not pixel-labeled are hidden truth, for the diagnostics only: a
    loss reads a mask only where pixel_s is True.
    """
    wanted = methods.get(config.method).streams
    if data.source is not None:  # adaptation: the source labeled, the whole target train unlabeled
        if "w" in wanted:
            raise ValueError(f"config.method={config.method!r} has no image-level labels with a source domain")
        everything = np.arange(len(data.train))
        source_all = np.arange(len(data.source.train))
        rows = {
            "l": Rows([(data.source.train, source_all, True, True)]),
            "u": Rows([(data.train, everything, False, False)] + _all_unlabeled(data)),
        }
    else:
        labeled, rest, image_labeled = partition_sets(config, data)
        rows = {
            "l": Rows([(data.train, labeled, True, True)]),
            "u": Rows(
                [(data.train, rest, np.isin(rest, image_labeled), False)] + _all_unlabeled(data)
            ),
        }
    if "w" in wanted:
        rows["w"] = Rows(
            [(data.train, labeled, True, True), (data.train, image_labeled, True, False)]
            + tagged_unlabeled(data)
        )
        if len(rows["w"]) == len(labeled):
            raise ValueError(
                f"config.method={config.method!r} learns from image-level labels, but no image "
                "without pixel labels has them: set config.data.image_labeled_fraction (a "
                "fraction or 'rest'), or give an image_folder a tags.json"
            )
    common = dict(
        process_index=process_index,
        process_count=process_count,
        data_config=config.data,
        num_classes=data.num_classes,
        split=f"{data.name}/train",
        tags=data.tags,
    )
    split_of = {"l": f"{data.source.name}/train (source)"} if data.source is not None else {}
    # The method says which streams it reads: "l", and "u" (and "u1") of images without pixel
    # labels, "w" of images with image-level labels.
    seeds = {"l": 2 * config.seed, "u": 2 * config.seed + 10_007, "u1": 2 * config.seed + 20_014}
    seeds["w"] = 2 * config.seed + 30_021
    sizes = {"l": ("config.batch_size_labeled", config.batch_size_labeled)}
    unlabeled_size = ("config.batch_size_unlabeled", config.batch_size_unlabeled)
    streams = {}
    for name in [s for s in STREAM_ORDER if s in wanted]:
        batch_name, global_batch = sizes.get(name, unlabeled_size)
        streams[name] = _stream(
            rows["u" if name == "u1" else name],
            seed=seeds[name],
            global_batch=global_batch,
            batch_name=batch_name,
            **{**common, "split": split_of.get(name, common["split"])},
        )
    names = list(streams)
    length = min(len(ds) for ds in streams.values())  # all are "infinite"; zip needs one length
    zipped = grain.experimental.ZipMapDataset(parents=[streams[n][:length] for n in names]).map(
        lambda batches: {
            f"{field}_{name}": batch[field]
            for name, batch in zip(names, batches)
            for field in FIELDS
        }
    )
    threads = int(config.data.worker_threads)
    return zipped.to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
    )


# The streams in the order their seeds were first drawn, and each batch's fields.
STREAM_ORDER = ("l", "u", "u1", "w")
FIELDS = ("image", "mask", "classes", "pixel")


def _all_unlabeled(data) -> list:
    """`data.unlabeled` (images without masks) as a part of a stream's rows."""
    if data.unlabeled is None:
        return []
    return [(data.unlabeled, np.arange(len(data.unlabeled)), False, False)]


def tagged_unlabeled(data) -> list:
    """The part of `data.unlabeled` (images without masks) the data set has tags for."""
    if data.unlabeled is None or not data.tags:
        return []
    ids = [_ident(data.unlabeled[i]) for i in range(len(data.unlabeled))]
    tagged = np.asarray([i for i, ident in enumerate(ids) if ident in data.tags], np.int64)
    return [(data.unlabeled, tagged, False, False)] if len(tagged) else []


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
