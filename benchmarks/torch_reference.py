r"""The same CPS train step in PyTorch, timed on the CPU: a side-by-side for train_step.py.

  python benchmarks/torch_reference.py --config configs/paper.py --config.batch_size_labeled=2
      --config.batch_size_unlabeled=2 --config.data.crop_size="(256,256)" [--compile]
      [--steps 5] [--threads 0] [--matmul_size 4096]

Builds DeepLabv3+ on a dilated ResNet as cps_jax/models/ builds it (fields of `config.model`:
backbone, stem, output_stride, width, aspp_channels, low_level_channels, decoder_channels,
multi_grid, aspp_rates) and the CPS step of cps_jax/train_step.py (`config.method == "cps"`):
two nets from different seeds, each with its own SGD (momentum, weight decay of `config.optim`),
one train-mode forward of each net on the labeled batch and another on the unlabeled one,
supervised CE on the labeled logits + cps_weight * the two cross pseudo supervision CEs over all
logits, backward, both optimizer steps. Inputs and labels are random.

Prints a markdown table: eager median step time and achieved GFLOP/s, optionally the same for
`torch.compile` of the step, FLOPs per step (FlopCounterMode: convolutions and matmuls, forward
and backward), and a float32 matmul measured in the same run as the ceiling. PyTorch is optional:
without it the script says so and exits 0.
"""

import time
import types

import numpy as np
from absl import app, flags
from ml_collections import config_flags

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode
except ImportError:  # optional: main() says so; the stub only lets the classes below be defined
    torch = None
    nn = types.SimpleNamespace(Module=object)

config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=False)
flags.DEFINE_integer("steps", 5, "Timed steps (after one warm-up step).")
flags.DEFINE_bool("compile", False, "Also time torch.compile of the step function.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads; 0 keeps torch's default.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square float32 matmul for the ceiling.")
flags.DEFINE_integer("num_classes", 19, "Classes of the head.")
FLAGS = flags.FLAGS

# depth -> (block type, blocks per stage), as cps_jax/models/resnet.py
BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def conv(cin, cout, kernel, stride=1, dilation=1, bias=False):
    # Symmetric padding dilation * (k - 1) // 2, as cps_jax pads (never "same").
    pad = dilation * (kernel - 1) // 2
    return nn.Conv2d(cin, cout, kernel, stride, pad, dilation, bias=bias)


class Block(nn.Module):
    """Basic (two 3x3, both dilated) or bottleneck (1x1, 3x3 with stride and dilation, 1x1 x4)."""

    def __init__(self, kind, cin, planes, stride, dilation):
        super().__init__()
        self.out_channels = planes * (1 if kind == "basic" else 4)
        if kind == "basic":
            specs = [(cin, planes, 3, stride, dilation), (planes, planes, 3, 1, dilation)]
        else:
            specs = [
                (cin, planes, 1),
                (planes, planes, 3, stride, dilation),
                (planes, self.out_channels, 1),
            ]
        self.convs = nn.ModuleList(conv(*s) for s in specs)
        self.bns = nn.ModuleList(nn.BatchNorm2d(s[1]) for s in specs)
        self.downsample = None
        if stride != 1 or cin != self.out_channels:
            self.downsample = nn.Sequential(
                conv(cin, self.out_channels, 1, stride), nn.BatchNorm2d(self.out_channels)
            )

    def forward(self, x):
        y = x
        for i, (c, bn) in enumerate(zip(self.convs, self.bns)):
            y = bn(c(y))
            if i < len(self.convs) - 1:  # the last ReLU comes after the residual sum
                y = F.relu(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """Dilated ResNet: returns (layer1, layer4) features."""

    def __init__(self, depth, stem, output_stride, width, multi_grid):
        super().__init__()
        kind, layers = BLOCKS[depth]
        w = width
        if stem == "deep":  # v1c: three 3x3 convs, widths w, w, 2w
            specs = [(3, w, 3, 2), (w, w, 3, 1), (w, 2 * w, 3, 1)]
        else:  # torchvision: one 7x7
            specs = [(3, w, 7, 2)]
        self.stem = nn.Sequential(
            *[m for s in specs for m in (conv(*s), nn.BatchNorm2d(s[1]), nn.ReLU())]
        )
        if len(multi_grid) < layers[3]:
            raise ValueError(f"multi_grid needs {layers[3]} entries, got {multi_grid!r}")
        mg = tuple(multi_grid)[: layers[3]]
        # (stride, per-block dilations) of layer1..layer4
        plan = {
            32: [(1, None), (2, None), (2, None), (2, None)],
            16: [(1, None), (2, None), (2, None), (1, tuple(2 * m for m in mg))],
            8: [(1, None), (2, None), (1, (2,) * layers[2]), (1, tuple(4 * m for m in mg))],
        }[output_stride]
        cin = specs[-1][1]
        self.layers = nn.ModuleList()
        for i, (n, (stride, dilations)) in enumerate(zip(layers, plan)):
            blocks = []
            for j, d in enumerate(dilations or (1,) * n):
                blocks.append(Block(kind, cin, w * 2**i, stride if j == 0 else 1, d))
                cin = blocks[-1].out_channels
            self.layers.append(nn.Sequential(*blocks))
        self.out_channels = cin
        self.low_level_channels = self.layers[0][-1].out_channels

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        low = x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = layer(x)
        return low, x


def leaky(x):
    return F.leaky_relu(x, 0.01)


class ASPP(nn.Module):
    """1x1 + three dilated 3x3, concatenated, reduced; the image-pooling branch is added."""

    def __init__(self, cin, cout, rates):
        super().__init__()
        self.maps = nn.ModuleList([conv(cin, cout, 1)] + [conv(cin, cout, 3, 1, r) for r in rates])
        self.map_bn = nn.BatchNorm2d(4 * cout)
        self.red_conv = conv(4 * cout, cout, 1)
        self.pool_conv = conv(cin, cout, 1)
        self.pool_bn = nn.BatchNorm2d(cout)
        self.pool_red_conv = conv(cout, cout, 1)
        self.red_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = self.red_conv(leaky(self.map_bn(torch.cat([m(x) for m in self.maps], 1))))
        pool = leaky(self.pool_bn(self.pool_conv(x.mean((2, 3), keepdim=True))))
        return leaky(self.red_bn(out + self.pool_red_conv(pool)))


def conv_bn_relu(cin, cout, kernel):
    return nn.Sequential(conv(cin, cout, kernel), nn.BatchNorm2d(cout), nn.ReLU())


class DeepLabV3Plus(nn.Module):
    def __init__(self, m, num_classes):
        super().__init__()
        os_ = m.output_stride
        rates = m.get("aspp_rates", None) or {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[os_]
        depth = int(m.backbone.removeprefix("resnet"))
        multi_grid = tuple(m.get("multi_grid", (1, 2, 4)))
        self.backbone = ResNet(depth, m.stem, os_, m.width, multi_grid)
        self.aspp = ASPP(self.backbone.out_channels, m.aspp_channels, tuple(rates))
        self.reduce = conv_bn_relu(self.backbone.low_level_channels, m.low_level_channels, 1)
        self.last = nn.Sequential(
            conv_bn_relu(m.aspp_channels + m.low_level_channels, m.decoder_channels, 3),
            conv_bn_relu(m.decoder_channels, m.decoder_channels, 3),
        )
        self.classifier = conv(m.decoder_channels, num_classes, 1, bias=True)
        for mod in self.modules():  # cps_jax's init: Kaiming normal (fan_in), zero bias
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x):
        low, f = self.backbone(x)
        low = self.reduce(low)
        f = F.interpolate(self.aspp(f), low.shape[2:], mode="bilinear", align_corners=True)
        logits = self.classifier(self.last(torch.cat([f, low], 1)))  # ASPP channels first
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def cps_loss(left_l, left_u, right_l, right_u, labels, cps_weight):
    def ce(logits, target):
        return F.cross_entropy(logits, target, ignore_index=255)

    left_all, right_all = torch.cat([left_l, left_u]), torch.cat([right_l, right_u])
    # Hard pseudo labels from the other net, no gradient through them.
    cross = ce(left_all, right_all.argmax(1).detach()) + ce(right_all, left_all.argmax(1).detach())
    return ce(left_l, labels) + ce(right_l, labels) + cps_weight * cross


def make_step(config):
    o = config.optim
    nets, opts = [], []
    for seed in (0, 1):  # the two CPS nets start from different weights
        torch.manual_seed(seed)
        net = DeepLabV3Plus(config.model, FLAGS.num_classes).train()
        nets.append(net)
        opts.append(
            torch.optim.SGD(
                net.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        )
    h, w = config.data.crop_size
    g = torch.Generator().manual_seed(0)
    n_l, n_u = config.batch_size_labeled, config.batch_size_unlabeled
    x_l = torch.randn(n_l, 3, h, w, generator=g)
    x_u = torch.randn(n_u, 3, h, w, generator=g)
    labels = torch.randint(0, FLAGS.num_classes, (n_l, h, w), generator=g)
    left, right = nets

    def step():
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        # Separate labeled and unlabeled forwards: BN statistics per call, as cps_jax.
        loss = cps_loss(
            left(x_l), left(x_u), right(x_l), right(x_u), labels, config.loss.cps_weight
        )
        loss.backward()
        for opt in opts:
            opt.step()
        return loss.detach()

    return step


def time_calls(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(n, repeats=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    return 2 * n**3 / float(np.median(time_calls(lambda: torch.mm(a, b), repeats))) / 1e9


def main(argv):
    del argv
    if torch is None:
        print("torch is not installed: skipping the PyTorch side-by-side")
        return
    config = FLAGS.config
    if config.method != "cps":
        print(f"method {config.method!r}: only cps is mirrored in PyTorch; nothing to time")
        return
    if FLAGS.threads > 0:
        torch.set_num_threads(FLAGS.threads)

    step = make_step(config)
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    flops = float(counter.get_total_flops())

    variants = {"eager": step}
    if FLAGS.compile:
        compiled = torch.compile(step)
        try:
            start = time.perf_counter()
            compiled()  # compiles; also the warm-up
            compile_seconds = time.perf_counter() - start
            variants["compiled"] = compiled
        except Exception as e:  # noqa: BLE001
            # An optional extra (inductor needs a C++ compiler, ...): say why, time eager alone.
            print(f"torch.compile failed, timing eager only: {type(e).__name__}: {e}")
    times = {name: [] for name in variants}
    for _ in range(FLAGS.steps):  # interleaved, so a noisy neighbour slows both alike
        for name, fn in variants.items():
            times[name] += time_calls(fn, 1)
    ceiling = matmul_gflops(FLAGS.matmul_size)

    m = config.model
    h, w = config.data.crop_size
    rows = {
        "model": (
            f"{m.backbone} {m.stem} stem w{m.width} OS{m.output_stride}, DeepLabv3+ "
            f"(ASPP {m.aspp_channels}, low {m.low_level_channels}, decoder "
            f"{m.decoder_channels}), {FLAGS.num_classes} classes, x2 nets"
        ),
        "batch": f"{config.batch_size_labeled}+{config.batch_size_unlabeled} images at {h}x{w}",
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
    }
    achieved = {name: flops / float(np.median(times[name])) / 1e9 for name in variants}
    for name in variants:
        rows[f"{name} median step time"] = f"{np.median(times[name]) * 1e3:.1f} ms"
        rows[f"{name} achieved"] = f"{achieved[name]:.1f} GFLOP/s"
    if "compiled" in variants:
        rows["compile time (first call)"] = f"{compile_seconds:.1f} s"
    rows["FLOPs per step (FlopCounterMode)"] = f"{flops / 1e9:.2f} GFLOP"
    rows[f"torch f32 matmul {FLAGS.matmul_size}^2 (same run)"] = f"{ceiling:.1f} GFLOP/s"
    for name in variants:
        rows[f"{name} / matmul ceiling"] = f"{achieved[name] / ceiling:.3f}"
    print("| quantity | value |")
    print("|---|---|")
    for label, value in rows.items():
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
