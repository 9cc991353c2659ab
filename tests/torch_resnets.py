"""PyTorch ResNets with the module names of the checkpoints cps_jax imports (test references).

``stem="torchvision"`` mirrors torchvision's ``resnet*`` (7x7 ``conv1``, ``bn1``);
``stem="v1c"`` the CPS reference's deep stem (``conv1`` = Sequential(3x3 s2, BN, ReLU, 3x3, BN,
ReLU, 3x3), then ``bn1``); ``stem="v1c-mmcv"`` the same stem named ``stem.0`` ... ``stem.8``.
Blocks are torchvision's (stride on the 3x3 conv, ``downsample`` = Sequential(1x1 conv, BN)).
``dilate_`` turns strides into dilations the way the reference's ``_nostride_dilate`` does.
"""

import torch
from torch import nn

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, depth, stem="torchvision", width=64, num_classes=10):
        super().__init__()
        kind, layers = BLOCKS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.stem_type = stem
        w = width
        if stem == "torchvision":
            self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            cin = w
        else:
            convs = [
                conv3x3(3, w, 2),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                conv3x3(w, w),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                conv3x3(w, 2 * w),
            ]
            if stem == "v1c":
                self.conv1 = nn.Sequential(*convs)
                self.bn1 = nn.BatchNorm2d(2 * w)
            else:  # v1c-mmcv
                self.stem = nn.Sequential(*convs, nn.BatchNorm2d(2 * w), nn.ReLU())
            cin = 2 * w
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, n in enumerate(layers):
            planes, stride = w * 2**i, 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(
                        nn.Conv2d(cin, planes * block.expansion, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(planes * block.expansion),
                    )
                blocks.append(block(cin, planes, stride if j == 0 else 1, down))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, num_classes)  # ImageNet classifier: the converter ignores it

    def features(self, x):
        """{"stem", "layer1" .. "layer4"} as cps_jax's ResNet returns them (NCHW here)."""
        if self.stem_type == "v1c-mmcv":
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        out = {"stem": x}
        x = self.maxpool(x)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out[name] = x
        return out


def _nostride_dilate(module, dilate):
    # The reference's rule: strided convs lose their stride, every 3x3 conv gets `dilate`.
    if isinstance(module, nn.Conv2d):
        if module.stride == (2, 2):
            module.stride = (1, 1)
        if module.kernel_size == (3, 3):
            module.dilation = (dilate, dilate)
            module.padding = (dilate, dilate)


def dilate_(model, output_stride, multi_grid=(1, 2, 4)):
    """Output stride 16: layer4 blocks dilated 2 * multi_grid; 8: layer3 by 2, layer4 4 * grid."""
    base = {32: None, 16: 2, 8: 4}[output_stride]
    if output_stride == 8:
        model.layer3.apply(lambda m: _nostride_dilate(m, 2))
    if base:
        for block, grid in zip(model.layer4.children(), multi_grid):
            block.apply(lambda m, d=base * grid: _nostride_dilate(m, d))
    return model


@torch.no_grad()
def randomize_(model, seed=0):
    """Random weights and BN statistics (PyTorch's defaults would make BN an identity); eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)
    return model.eval()
