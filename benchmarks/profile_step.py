r"""Where a train step's time goes: a `jax.profiler` trace of the step, its XLA ops by category.

  python benchmarks/profile_step.py --config configs/demo.py --steps 3
  python benchmarks/profile_step.py --config configs/paper.py --config.batch_size_labeled=2 \
      --config.batch_size_unlabeled=2 --config.data.crop_size="(256,256)" --steps 1
      [--out TRACE_DIR] [--top 20]

Compiles the step and runs it once (warm-up), then traces `--steps` steps with `jax.profiler.trace`
into `--out` (a temporary folder by default; TensorBoard's or XProf's profile viewer shows its
timeline). Config fields are overridden as in `train_step.py`, e.g. `--config.model.conv_impl=xla`.

The trace has one event per HLO instruction that the XLA runtime executes (a fusion, a
convolution, a copy...). Their self times are summed into the categories of `CATEGORIES`, by the
HLO opcodes each instruction runs (read from the compiled module: a fusion runs the instructions of
the computation it calls, and its name alone does not always say what they are). Prints a markdown
table of the categories (time per step, share of the busy time), the `--top` most expensive ops,
and the busy time per step (summed over the threads that ran ops) against the wall step time.
"""

import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import train_step  # defines --config and --num_classes, and builds the step as it does there
from absl import app, flags

from cps_jax import parallel

# The first category with a pattern that matches one of an op's tokens (its name without the
# ".N" suffix, the HLO opcodes it runs, a custom call's target) takes the op, so the order is the
# priority: a fusion of a pad and a concatenation is a concatenation, one of a dot and an add a dot.
CATEGORIES = (
    ("matmul / convolution", r"dot|convolution|conv_general_dilated|dot_general|.*(gemm|matmul).*"),
    ("concatenate", r"concatenate"),
    ("pad / slice", r"pad|slice|dynamic-slice|dynamic-update-slice"),
    ("reduce", r"reduce|reduce-window|select-and-scatter"),
    ("copy / transpose", r"copy|transpose|reverse"),
    ("other", r"scatter|gather|sort|rng.*|custom-call|while|conditional|call"),
    ("elementwise", r".*"),  # loop fusions of adds, multiplies, selects, iotas...
)
# Bookkeeping that moves no data.
IGNORED_OPCODES = {"parameter", "constant", "bitcast", "get-tuple-element", "tuple"}

# train_step.py's flags that mean nothing here; --steps means the traced steps.
for _name in ("variant", "matmul_size", "steps"):
    delattr(flags.FLAGS, _name)
flags.DEFINE_integer("steps", 3, "Traced steps (after one untraced warm-up step).")
flags.DEFINE_string("out", None, "Folder of the trace; a new temporary folder by default.")
flags.DEFINE_integer("top", 15, "How many individual ops to list.")
FLAGS = flags.FLAGS


def hlo_opcodes(hlo_text: str) -> dict:
    """{instruction name: (opcodes it runs)} of an optimized HLO module's text."""
    computations, current = {}, None
    for line in hlo_text.splitlines():
        if line[:1] not in ("", " ") and line.endswith("{"):  # "[ENTRY ]%name (params) -> type {"
            current = computations.setdefault(re.match(r"(?:ENTRY )?%?(\S+)", line)[1], {})
            continue
        m = re.match(r"\s+(?:ROOT )?%?(\S+) = (.*)", line)
        if current is None or not m:
            continue
        rest = m[2]
        if rest.startswith("("):  # a tuple type: skip to its closing parenthesis
            depth = 0
            for i, char in enumerate(rest):
                depth += {"(": 1, ")": -1}.get(char, 0)
                if depth == 0:
                    break
            rest = rest[i + 1 :]
        else:
            rest = rest.partition(" ")[2]
        op = re.match(r"\s*([\w-]+)\(", rest)
        calls = re.search(r"\bcalls=%?([\w.-]+)", rest)
        target = re.search(r'custom_call_target="([^"]+)"', rest)
        current[m[1]] = (
            op[1] if op else "",
            calls[1] if calls else None,
            target[1] if target else None,
        )

    def runs(instruction):
        opcode, calls, target = instruction
        if opcode == "fusion" and calls in computations:
            return {o for i in computations[calls].values() for o in runs(i)}
        return {o for o in (opcode, target) if o and o not in IGNORED_OPCODES}

    return {
        name: tuple(sorted(runs(i))) for comp in computations.values() for name, i in comp.items()
    }


def category(name: str, opcodes) -> str:
    tokens = (re.sub(r"\.\d+$", "", name), *opcodes)
    for label, pattern in CATEGORIES:
        if any(re.fullmatch(pattern, t) for t in tokens):
            return label
    return "other"


def trace_events(out: str) -> list:
    """[(thread, start µs, duration µs, args)] of the newest trace under `out`."""
    runs = sorted(glob.glob(os.path.join(out, "plugins", "profile", "*")))
    if not runs:
        raise FileNotFoundError(f"no trace under {out}/plugins/profile")
    chrome = glob.glob(os.path.join(runs[-1], "*.trace.json.gz"))
    if chrome:  # the Chrome trace that the profiler exports beside the xplane
        with gzip.open(chrome[0], "rt") as f:
            events = json.load(f)["traceEvents"]
        return [
            (e["tid"], e["ts"], e["dur"], e.get("args") or {}) for e in events if e.get("ph") == "X"
        ]
    # No Chrome trace: read the xplane itself.
    [xplane] = glob.glob(os.path.join(runs[-1], "*.xplane.pb"))
    plane = jax.profiler.ProfileData.from_file(xplane).find_plane_with_name("/host:CPU")
    return [
        (line.name, e.start_ns / 1e3, e.duration_ns / 1e3, dict(e.stats))
        for line in plane.lines
        for e in line.events
    ]


def op_self_times(events: list, module: str) -> list:
    """[(op name, self time in µs, thread)] of the XLA op events of `module`."""
    by_thread = collections.defaultdict(list)
    for thread, start, dur, args in events:
        # Op events carry the HLO instruction; python, runtime and "end: ..." events do not.
        if args.get("hlo_module") == module and "hlo_op" in args:
            by_thread[thread].append((start, -dur, args["hlo_op"]))
    ops = []
    for thread, evs in by_thread.items():
        stack = []  # enclosing ops (a while loop's body runs inside its op): time counted once
        for start, neg_dur, name in sorted(evs):
            while stack and start >= stack[-1][1]:
                stack.pop()
            if stack:
                ops[stack[-1][0]][1] += neg_dur
            stack.append((len(ops), start - neg_dur))
            ops.append([name, -neg_dur, thread])
    return ops


def main(argv):
    del argv
    mesh = parallel.make_mesh()
    step = train_step.Variant("config", FLAGS.config.copy_and_resolve_references(), mesh)
    out = FLAGS.out or tempfile.mkdtemp(prefix="profile_step_")
    walls = []
    with jax.profiler.trace(out):
        for _ in range(FLAGS.steps):
            walls.append(train_step.time_calls(step.run, 1)[0])
    module = re.match(r"HloModule (\S+?),?\s", step.compiled.as_text())[1]
    opcodes = hlo_opcodes(step.compiled.as_text())
    ops = op_self_times(trace_events(out), module)
    if not ops:
        raise RuntimeError(f"the trace in {out} has no op events of {module}")

    n = FLAGS.steps
    per_cat, per_op, count = collections.Counter(), collections.Counter(), collections.Counter()
    for name, us, _ in ops:
        per_cat[category(name, opcodes.get(name, ()))] += us
        per_op[name] += us
        count[name] += 1
    busy = sum(per_cat.values())
    config, m = step.config, step.config.model
    h, w = config.data.crop_size
    print(
        f"{config.method}, {m.backbone} w{m.width} OS{m.output_stride} conv_impl={m.conv_impl}, "
        f"{config.batch_size_labeled}+{config.batch_size_unlabeled} images at {h}x{w}, "
        f"{jax.device_count()} x {jax.devices()[0].device_kind}; {n} traced step(s) in {out}\n"
    )
    print("| category | ms per step | share of busy time |\n|---|---|---|")
    for label, us in per_cat.most_common():
        print(f"| {label} | {us / n / 1e3:.1f} | {100 * us / busy:.1f}% |")
    print(
        f"\n| op (top {FLAGS.top}) | category | ms per step | count per step |\n|---|---|---|---|"
    )
    for name, us in per_op.most_common(FLAGS.top):
        cat = category(name, opcodes.get(name, ()))
        print(f"| {name} | {cat} | {us / n / 1e3:.2f} | {count[name] / n:g} |")
    threads = len({t for *_, t in ops})
    print(
        f"\nbusy time per step: {busy / n / 1e3:.1f} ms, summed over the {threads} threads that "
        f"ran ops; wall step time (traced): {sum(walls) / n * 1e3:.1f} ms; "
        f"{len(ops) / n:g} op executions per step."
    )
    print(
        "Busy time above the wall time means that threads ran ops at the same time; below it, "
        "that the step waited (dispatch, synchronization, profiler overhead)."
    )


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
