"""What the command-line entry points do, as plain functions (tests call these directly)."""

import dataclasses
import os
import sys
import time

import jax

from cps_jax import checkpointing, config_checks, datasets, distributed, export, inference
from cps_jax import parallel, run_config
from cps_jax import predict as predict_lib
from cps_jax.errors import ConfigError
from cps_jax.evaluate import Evaluator, nets_of
from cps_jax.optim import make_optimizer
from cps_jax.state import create_train_state, net_graphdef
from cps_jax.trainer import Trainer, checkpoint_dir, write_results
from cps_jax.workdir_lock import WorkdirLock


def _banner(workdir: str) -> None:
    distributed.print_main(
        f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es); workdir {os.path.abspath(workdir)}"
    )


def train(config, workdir: str) -> dict:
    start = time.perf_counter()
    config_checks.check_config(config)
    config_checks.check_workdir(workdir)
    # Before any work: a second run on this workdir would mix its checkpoints with this one's.
    lock = distributed.on_main_process(lambda: WorkdirLock(workdir).acquire(), "workdir lock")
    try:
        run_config.check_resume(config, workdir, checkpoint_dir(workdir))
        _banner(workdir)
        results = Trainer(config, workdir).train()
    finally:
        if lock is not None:
            lock.release()
    distributed.print_main(f"Done in {time.perf_counter() - start:.0f}s.")
    return results


def abstract_nets(config, num_classes: int, sharding):
    """Shapes of both nets' params and BN statistics, as saved inside a TrainState."""
    tx = make_optimizer(config.optim, config.total_steps, config.batch_size_labeled)
    # Shapes only: the pretrained backbone (same shapes) need not be read, nor still exist.
    model_config = config.model.copy_and_resolve_references()
    model_config.pretrained = ""
    shapes = jax.eval_shape(
        lambda: create_train_state(
            model_config, num_classes, tx, jax.random.key_data(jax.random.key(0)), config.method
        )
    )
    return checkpointing.abstract_like(nets_of(shapes), sharding)


def restore_nets(config, workdir: str, num_classes: int, mesh, step="latest"):
    """(step, nets): the nets' params and BN statistics only, never the optimizer state. For
    'latest', a checkpoint that cannot be read gives way to the one before, with a warning."""
    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True)
    resolved = checkpointer.resolve_step(step)
    older = [s for s in sorted(checkpointer.all_steps(), reverse=True) if s < resolved]
    abstract = abstract_nets(config, num_classes, parallel.replicated(mesh))
    found, nets, failures = checkpointing.restore_newest(
        [resolved] + (older if step == "latest" else []),
        lambda s: checkpointing.check_finite(checkpointer.restore_subtree(s, abstract)),
        checkpointer.directory,
    )
    for bad, reason in failures:
        checkpointing.warn(
            f"checkpoint step {bad} in {checkpointer.directory} cannot be read ({reason}); "
            f"using step {found}"
        )
    return found, nets


def evaluate_checkpoint(config, workdir: str, *, step="latest", split: str = "validation"):
    """(step, data, results) of one checkpoint."""
    (steps, results), data = _evaluate_steps(config, workdir, [step], split)
    return steps[0], data, results[0]


def _evaluate_steps(config, workdir: str, which: list, split: str):
    """([resolved steps], [results]) of each checkpoint named in `which`, one evaluator for all."""
    mesh = parallel.make_mesh()
    data = datasets.load_shared(config.data)
    evaluator = Evaluator.from_config(
        config, net_graphdef(config.model, data.num_classes), data, mesh, split=split
    )
    steps, done = [], {}
    for w in which:
        step, nets = restore_nets(config, workdir, data.num_classes, mesh, w)
        if step not in done:  # best and latest are often the same checkpoint
            done[step] = evaluator.run(nets)[0]
        steps.append(step)
    return (steps, [done[s] for s in steps]), data


def parse_steps(spec: str) -> list[str]:
    """'best,latest' -> ['best', 'latest']; each one latest, best or a step number."""
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    bad = [s for s in items if s not in ("latest", "best") and not s.isdigit()]
    if not items or bad:
        raise ConfigError(
            f"--step={spec!r}: expected latest, best, a step number, or several separated by "
            "commas (e.g. best,latest)"
        )
    return list(dict.fromkeys(items))


def evaluate(config, workdir: str, *, step="latest", split: str = "validation") -> dict:
    """cps-eval: {which: (step, results)} for each of `step` ('best,latest' evaluates both);
    `config` None: the run's own (W/config.json)."""
    which = parse_steps(step)
    config_checks.check_workdir(workdir, exist=True)
    config = run_config.resolve(config, workdir)
    config_checks.check_config(config)
    _banner(workdir)
    try:
        (steps, results), data = _evaluate_steps(config, workdir, which, split)
    except FileNotFoundError as error:
        raise ConfigError(str(error)) from error
    if jax.process_index() == 0:
        for s, r in dict(zip(steps, results)).items():
            write_results(workdir, data.class_names, r, step=s, name=f"eval_{split}_{s}")
        if len(which) > 1:
            print(
                "left mIoU: "
                + ", ".join(
                    f"{w} (step {s}) {100 * r['left']['miou']:.2f}"
                    for w, s, r in zip(which, steps, results)
                ),
                flush=True,
            )
    return {w: (s, r) for w, s, r in zip(which, steps, results)}


def export_model(config, workdir: str, *, step="best", net: str = "left", output: str) -> str:
    """cps-export: one checkpoint's net(s) as a single model file (cps_jax.export); `config`
    None: the run's own (W/config.json)."""
    config_checks.check_workdir(workdir, write=False, exist=True)
    config = run_config.resolve(config, workdir)
    _banner(workdir)
    try:
        class_names, palette, label_ids = export.class_table(config.data)
        step, nets = restore_nets(config, workdir, len(class_names), parallel.make_mesh(), step)
        nets = export.select_nets(nets, net, f"the checkpoint at step {step}")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    model = export.Model(config, nets, class_names, palette, label_ids, step)
    export.save(model, output)
    print(f"Wrote {', '.join(nets)} net(s) of step {step} to {output}", flush=True)
    return output


def load_model(*, model_file=None, config=None, workdir=None, step="latest", net="left"):
    """The model `cps-predict` runs: a model file, or a checkpoint in a workdir with its config
    (the run's own unless `config` is given)."""
    try:
        if model_file:
            model = export.load(model_file)
            return dataclasses.replace(model, nets=export.select_nets(model.nets, net, model_file))
        if workdir is None:
            raise ValueError("give --model FILE, or --workdir (and optionally --config)")
        config_checks.check_workdir(workdir, write=False, exist=True)
        config = run_config.resolve(config, workdir)
        class_names, palette, label_ids = export.class_table(config.data)
        step, nets = restore_nets(config, workdir, len(class_names), parallel.make_mesh(), step)
        nets = export.select_nets(nets, net, f"the checkpoint at step {step}")
        return export.Model(config, nets, class_names, palette, label_ids, step)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error


def predict(
    model,
    input_spec: str,
    output_dir: str,
    *,
    overrides: dict | None = None,
    batch_size: int | None = None,
    ids: str = "train",
    outputs=predict_lib.OUTPUTS,
    alpha: float = 0.5,
    progress: bool = True,
) -> list:
    """cps-predict: writes the predictions of every image of `input_spec`; returns the files that
    could not be read, as (path, reason). `overrides`: InferenceOptions fields that replace the
    model config's `eval` section (mode, window, stride, scales, flip, pad_multiple)."""
    mesh, overrides = parallel.make_mesh(), overrides or {}
    try:
        fields = {**dataclasses.asdict(inference.options_from_config(model.config)), **overrides}
        if fields["mode"] == "sliding" and not fields["window"]:
            fields["window"] = tuple(model.config.data.crop_size)  # as config.eval.window=()
        try:
            options = inference.InferenceOptions(**fields)
        except ValueError as error:  # name the flag the user typed, not the config field
            raise ValueError(str(error).replace("config.eval.", "--")) from error
        unknown = set(outputs) - set(predict_lib.OUTPUTS)
        if unknown:
            raise ValueError(
                f"--outputs: unknown {sorted(unknown)}; expected some of {predict_lib.OUTPUTS}"
            )
        if ids not in ("train", "dataset"):
            raise ValueError(f"--ids: expected train or dataset, got {ids!r}")
        if ids == "dataset" and model.label_ids is None:
            raise ValueError(
                f"--ids=dataset: the model's data set ({model.config.data.name}) has no label "
                "ids other than its train ids"
            )
        files = predict_lib.find_images(input_spec)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    devices = parallel.data_parallel_size(mesh)
    batch_size = batch_size or model.config.eval_batch_size
    batch_size = -(-batch_size // devices) * devices  # whole batches on every device
    predict_fn = predict_lib.make_predict_fn(model.graphdef(), model.nets, options, mesh)
    failed = predict_lib.predict_files(
        files,
        output_dir,
        predict_fn,
        options=options,
        batch_size=batch_size,
        palette=model.palette,
        label_ids=model.label_ids if ids == "dataset" else None,
        outputs=outputs,
        alpha=alpha,
        progress=progress,
    )
    print(f"Wrote {len(files) - len(failed)} of {len(files)} image(s) to {output_dir}", flush=True)
    for path, reason in failed:
        print(f"failed: {path}: {reason}", file=sys.stderr, flush=True)
    return failed


def prepare(config) -> datasets.SegmentationData:
    """cps-prepare --config FILE: prepares the data set of `config.data`."""
    return prepare_data(config.data)


def prepare_dataset(name: str, **fields) -> datasets.SegmentationData:
    """cps-prepare NAME [--data_dir --manual_dir --folder --val_fraction]: `fields` are those of
    `config.data` (None: not given)."""
    if name not in datasets.NAMES:
        raise ConfigError(
            f"cps-prepare: unknown data set {name!r}; expected one of: {', '.join(datasets.NAMES)}"
        )
    return prepare_data(datasets.data_config(name, **fields))


def prepare_data(data_config) -> datasets.SegmentationData:
    """Prepares (unless already there) and opens one data set, and says what it holds. Problems
    with its input files raise `archives.DataError`, naming the file."""
    data = datasets.load_shared(data_config)
    unlabeled = "" if data.unlabeled is None else f", {len(data.unlabeled)} unlabeled-only"
    distributed.print_main(
        f"{data.name}: {len(data.train)} train, {len(data.validation)} validation{unlabeled} "
        f"examples in {datasets.resolve_data_dir(data_config)}"
    )
    return data
