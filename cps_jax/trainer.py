"""The CPS trainer: mesh, data, state, jitted step, loop, evaluation, checkpoints, logs."""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from cps_jax import checkpointing, config_checks, datasets, evaluate, input_pipeline
from cps_jax import logging_utils, parallel, run_config
from cps_jax import plots
from cps_jax import distributed, divergence, interrupts, methods, optim, pseudo_labels, visualize
from cps_jax.models.functional import net_graphdef
from cps_jax.state import create_train_state
from cps_jax.train_step import make_train_step


def validate_config(config, mesh) -> None:
    config_checks.check_config(config)
    for name in ("batch_size_labeled", "batch_size_unlabeled"):
        parallel.check_divisible(config[name], mesh, name)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


class Trainer:
    """Holds everything a run needs; `train()` runs or resumes it to `config.total_steps`."""

    def __init__(self, config, workdir: str, *, mesh=None, data=None):
        self.config, self.workdir = config, workdir
        self.mesh = mesh or parallel.make_mesh()
        validate_config(config, self.mesh)
        self.data = data or datasets.load_shared(config.data)
        self.graphdef = net_graphdef(config.model, self.data.num_classes)
        batch = config.batch_size_labeled  # what optim.lr_scaling scales by
        self.tx, self.lr_schedule = optim.make(config.optim, config.total_steps, batch)
        replicated = parallel.replicated(self.mesh)
        extra = methods.get(config.method).initial_extra(config, self.data.num_classes)
        self.init_fn = jax.jit(
            lambda rng: create_train_state(
                config.model, self.data.num_classes, self.tx, rng, config.method, extra
            ),
            out_shardings=replicated,
        )
        self.max_loss = float(config.max_loss)
        step = make_train_step(self.graphdef, config, self.tx, self.lr_schedule)
        self.step_fn = distributed.CompiledTogether(
            jax.jit(
                divergence.guard(step, self.max_loss),
                in_shardings=(
                    replicated,
                    replicated,
                    parallel.batch_sharding(self.mesh),
                    replicated,
                ),
                out_shardings=(replicated, replicated, replicated),
                donate_argnums=(0, 1),
            ),
            "train step",
        )
        self.evaluator = evaluate.Evaluator.from_config(
            config,
            self.graphdef,
            self.data,
            self.mesh,
            split="validation",
            num_visualize=config.num_visualize,
        )
        self.checkpointer = checkpointing.Checkpointer(
            checkpoint_dir(workdir), keep=config.keep_checkpoints
        )

    def initial_state(self):
        return self.init_fn(jax.random.key_data(jax.random.key(self.config.seed)))

    def initial_health(self):
        """What `step_fn` carries beside the state: no bad step yet (divergence.guard)."""
        return jax.device_put(divergence.initial_health(), parallel.replicated(self.mesh))

    def abstract_state(self):
        shapes = jax.eval_shape(self.initial_state)
        return checkpointing.abstract_like(shapes, parallel.replicated(self.mesh))

    def data_iterator(self):
        return iter(
            input_pipeline.train_dataset(
                self.config,
                self.data,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            )
        )

    def restore_or_init(self, data_iterator):
        """The latest checkpoint that can be read (state and, in place, the data iterator) if
        any, else a fresh state."""
        restored = self.checkpointer.restore_latest(self.abstract_state(), data_iterator)
        if restored is None:
            return self.initial_state()
        step, state = restored
        distributed.print_main(f"Resuming from step {step} in {checkpoint_dir(self.workdir)}")
        return state

    def stop_if_diverged(self, health) -> None:
        """Raises divergence.Diverged, naming the bad step and the last good checkpoint, if a
        step since the start of this run was not sane; nothing of it was saved."""
        bad = divergence.describe(health, self.max_loss)
        if bad is None:
            return
        self.checkpointer.wait()  # an earlier save in flight is good: let it land
        last, where = self.checkpointer.latest_step(), checkpoint_dir(self.workdir)
        good = (
            f"the last good checkpoint is step {last} in {where}"
            if last is not None
            else f"no checkpoint was saved in {where}"
        )
        raise divergence.Diverged(f"training diverged at {bad}; {good}; lower config.optim.lr")

    def evaluate(self, state, step: int, logger) -> dict:
        start = time.perf_counter()
        results, shown = self.evaluator.run(state.nets)
        scalars = {
            f"eval/{net}/{key}": r[key]
            for net, r in results.items()
            for key in ("miou", "pixel_accuracy")
        }
        logger.write(step, scalars)
        if jax.process_index() == 0:
            print(
                f"eval @ {step} ({time.perf_counter() - start:.1f}s): "
                + " ".join(f"{net} mIoU={100 * r['miou']:.2f}" for net, r in results.items()),
                flush=True,
            )
            if shown is not None:
                os.makedirs(os.path.join(self.workdir, "images"), exist_ok=True)
                grid = visualize.prediction_grid(
                    shown["image"], shown["mask"], shown["predictions"], self.data.palette
                )
                visualize.save_png(
                    os.path.join(self.workdir, "images", f"eval_{step:06d}.png"), grid
                )
        return results

    def train(self, until: int | None = None) -> dict:
        """Trains (or resumes) to config.total_steps; `until` stops early, as a preemption would.

        SIGTERM stops the run after the step in hand, saved; Ctrl-C or an error first lets a
        save in flight land. Either way interrupts.Stopped says where (cps_jax/interrupts.py).
        """
        if jax.process_index() == 0:  # cps-eval, cps-export and cps-predict read it
            run_config.save(self.config, self.workdir)
        logger = logging_utils.MetricLogger(self.workdir)
        self._done = None  # the last step trained, for the message of an interruption
        try:
            with interrupts.StopOnSigterm() as stop:
                state, results = self._train(until, logger, stop)
        except KeyboardInterrupt:
            self._finish_saves()
            raise interrupts.Stopped(self._interrupted(), interrupts.SIGINT_STATUS) from None
        except checkpointing.Unwritable:  # the save in flight is the one that failed
            raise
        except BaseException:
            self._finish_saves()
            raise
        finally:
            logger.close()
        if jax.process_index() == 0:
            step = int(jax.device_get(state.step))
            best = evaluate.best_checkpoint(self.checkpointer)
            write_results(
                self.workdir,
                self.data.class_names,
                results,
                step=step,
                best=best,
                pseudo=self.pseudo_summary,
            )
            plots.pseudo_shares_from_log(self.workdir, self.data.class_names)
            print(evaluate.best_and_last_line(best, step, results), flush=True)
        self.state = state
        return results

    def _finish_saves(self) -> None:
        """Waits for a save in flight: abandoned, it would leave pages of tracebacks, not a
        checkpoint. Its own failure is a warning: the error that stopped the run comes first."""
        try:
            self.checkpointer.wait()
        except Exception as error:
            checkpointing.warn(
                f"the checkpoint being written was lost: {checkpointing.failure_reason(error)}"
            )

    def _interrupted(self) -> str:
        last, where = self.checkpointer.latest_step(), checkpoint_dir(self.workdir)
        at = f"at step {self._done}" if self._done is not None else "before training a step"
        saved = f"step {last} in {where}" if last is not None else f"none in {where}"
        return (
            f"interrupted {at}; the last complete checkpoint is {saved}; "
            "run the same command to resume"
        )

    def _train(self, until, logger, stop):
        """(final state, last evaluation results) of the loop."""
        config = self.config
        last = config.total_steps if until is None else min(until, config.total_steps)
        data_iterator = self.data_iterator()
        state = self.restore_or_init(data_iterator)
        start_step = int(jax.device_get(state.step))
        progress = logging_utils.Progress(start_step, config.total_steps)
        base_rng = jax.random.key(config.seed + 1)
        results, metric_sum, metric_count, input_wait = None, None, 0, 0.0
        health = self.initial_health()
        self.pseudo_summary = None
        for step in range(start_step, last):
            # Steps are dispatched asynchronously: this wait is what the pipeline adds to a step.
            waited = time.perf_counter()
            local = next(data_iterator)
            input_wait += time.perf_counter() - waited
            # The masks of unlabeled images (mask_u*) feed the pseudo-label diagnostics only.
            batch = parallel.global_batch(local, self.mesh)
            # Folding the step in makes a resumed run draw the same randomness as an uninterrupted one.
            rng = jax.random.key_data(jax.random.fold_in(base_rng, step))
            state, health, metrics = self.step_fn(state, health, batch, rng)
            metric_sum = (
                metrics if metric_sum is None else jax.tree.map(jnp.add, metric_sum, metrics)
            )
            metric_count += 1
            done = self._done = step + 1
            is_log = done % config.log_every == 0 or done == config.total_steps
            is_eval = done % config.eval_every == 0 or done == config.total_steps
            is_save = is_eval or done % config.checkpoint_every == 0 or done == last
            stopping = stop.requested(done)
            if is_log or is_save or stopping:  # the device is waited for here anyway
                self.stop_if_diverged(health)
            if is_log:
                summed = jax.device_get(metric_sum)
                pseudo = summed.pop("pseudo", None)
                mean = {k: float(v) / metric_count for k, v in summed.items()}
                mean["lr"] = float(metrics["lr"])
                mean["input_wait_ms"] = 1e3 * input_wait / metric_count
                logger.write(done, {f"train/{k}": v for k, v in mean.items()})
                if pseudo is not None:
                    self.pseudo_summary = pseudo_labels.summarize(pseudo, self.data.class_names)
                    logger.write(done, {f"pseudo/{k}": v for k, v in self.pseudo_summary.items()})
                if jax.process_index() == 0:
                    print(progress.line(done, mean), flush=True)
                metric_sum, metric_count, input_wait = None, 0, 0.0
            if is_eval:
                results = self.evaluate(state, done, logger)
                if self.pseudo_summary is not None and jax.process_index() == 0:
                    line = pseudo_labels.console_line(self.pseudo_summary, self.data.class_names)
                    print(line, flush=True)
            if is_save or stopping:
                best = {checkpointing.BEST_METRIC: results["left"]["miou"]} if is_eval else None
                self.checkpointer.save(done, state, data_iterator, metrics=best)
            if stopping:
                self.checkpointer.wait()
                raise interrupts.Stopped(
                    f"stopped by SIGTERM at step {done}: saved checkpoint step {done} in "
                    f"{checkpoint_dir(self.workdir)}; run the same command to resume",
                    interrupts.SIGTERM_STATUS,
                )
        if results is None:  # nothing left to train: report the restored state
            results = self.evaluate(state, start_step, logger)
        self.checkpointer.wait()
        return state, results


def write_results(
    workdir: str,
    class_names,
    results: dict,
    *,
    step: int,
    name: str = "results",
    best=None,
    pseudo: dict | None = None,
):
    """`<name>.json` and a per-class markdown table `<name>.md` in the workdir; prints the table.
    `best`: {step, miou} of the best checkpoint, recorded next to these (last) results; `pseudo`:
    the last pseudo-label diagnostics (pseudo_labels.summarize), per class."""
    table = logging_utils.per_class_table(class_names, results)
    print(f"\nResults at step {step}:\n{table}", flush=True)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, f"{name}.md"), "w") as f:
        f.write(f"Step {step}\n\n{table}\n")
        if best:
            f.write("\n" + evaluate.best_and_last_line(best, step, results) + "\n")
        if pseudo:
            f.write(
                "\nPseudo labels on the unlabeled stream against its hidden masks, over the last"
                " log interval:\n\n" + pseudo_labels.per_class_table(pseudo, class_names) + "\n"
            )
    payload = {
        "step": step,
        **({"best": best} if best else {}),
        "class_names": list(class_names),
        **{
            net: {
                "miou": r["miou"],
                "pixel_accuracy": r["pixel_accuracy"],
                "iou": [None if not np.isfinite(v) else float(v) for v in r["iou"]],
            }
            for net, r in results.items()
        },
        **({"pseudo": {k: float(v) for k, v in pseudo.items()}} if pseudo else {}),
    }
    with open(os.path.join(workdir, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=1)
