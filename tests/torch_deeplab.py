"""DeepLabv3+ in PyTorch as the CPS reference code builds it, with its module names (a test
reference for tests/test_torch_deeplab.py).

  backbone      a dilated v1c ResNet of ``torch_resnets`` (checkpoint names ``conv1.0`` ...,
                ``layer4.2.conv2``); output stride 16 through ``dilate_``.
  head.aspp     ``map_convs.0-3`` (1x1 and three dilated 3x3, no bias), concatenated, ``map_bn``,
                LeakyReLU(0.01), ``red_conv`` 1x1; image pooling: global mean,
                ``global_pooling_conv`` 1x1, ``global_pooling_bn``, LeakyReLU, ``pool_red_conv``
                1x1, ADDED (broadcast over H, W); then ``red_bn``, LeakyReLU.
  head.reduce   layer1 -> 1x1 to the low-level width, BN, ReLU.
  head.last_conv  [ASPP upsampled (bilinear, align_corners=True), low-level] -> two 3x3
                conv-BN-ReLU.
  classifier    1x1 conv with bias; logits upsampled (bilinear, align_corners=True) to the input.

BatchNorm is PyTorch's own (eps 1e-5, momentum 0.1, unbiased running variance). ``cps_step``
is the reference's CPS loss without CutMix; ``sgd`` its optimizer (weight decay on conv weights
only) and ``poly_lr`` its learning-rate schedule.
"""

import torch
import torch.nn.functional as F
import torch_resnets
from torch import nn


class ASPP(nn.Module):
    def __init__(self, cin, hidden, cout, rates):
        super().__init__()
        self.map_convs = nn.ModuleList(
            [nn.Conv2d(cin, hidden, 1, bias=False)]
            + [nn.Conv2d(cin, hidden, 3, padding=r, dilation=r, bias=False) for r in rates]
        )
        self.map_bn = nn.BatchNorm2d(4 * hidden)
        self.global_pooling_conv = nn.Conv2d(cin, hidden, 1, bias=False)
        self.global_pooling_bn = nn.BatchNorm2d(hidden)
        self.red_conv = nn.Conv2d(4 * hidden, cout, 1, bias=False)
        self.pool_red_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self.red_bn = nn.BatchNorm2d(cout)
        self.leak_relu = nn.LeakyReLU()  # negative slope 0.01

    def forward(self, x):
        out = torch.cat([m(x) for m in self.map_convs], dim=1)
        out = self.red_conv(self.leak_relu(self.map_bn(out)))
        pool = x.view(x.size(0), x.size(1), -1).mean(dim=-1).view(x.size(0), x.size(1), 1, 1)
        pool = self.leak_relu(self.global_pooling_bn(self.global_pooling_conv(pool)))
        pool = self.pool_red_conv(pool).repeat(1, 1, x.size(2), x.size(3))
        return self.leak_relu(self.red_bn(out + pool))


class Head(nn.Module):
    def __init__(self, high_ch, low_ch, aspp_ch, reduce_ch, decoder_ch, rates):
        super().__init__()
        self.aspp = ASPP(high_ch, aspp_ch, aspp_ch, rates)
        self.reduce = nn.Sequential(
            nn.Conv2d(low_ch, reduce_ch, 1, bias=False), nn.BatchNorm2d(reduce_ch), nn.ReLU()
        )
        self.last_conv = nn.Sequential(
            nn.Conv2d(aspp_ch + reduce_ch, decoder_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_ch),
            nn.ReLU(),
            nn.Conv2d(decoder_ch, decoder_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_ch),
            nn.ReLU(),
        )

    def forward(self, feats):
        f = self.aspp(feats["layer4"])
        low = self.reduce(feats["layer1"])
        f = F.interpolate(f, size=low.shape[2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat((f, low), dim=1))


class DeepLabV3Plus(nn.Module):
    """``backbone``, ``head``, ``classifier``; NCHW images -> NCHW logits at the input size."""

    def __init__(
        self,
        num_classes,
        depth=50,
        width=64,
        aspp_channels=256,
        low_level_channels=48,
        decoder_channels=256,
        aspp_rates=(6, 12, 18),
        output_stride=16,
        multi_grid=(1, 2, 4),
    ):
        super().__init__()
        self.backbone = torch_resnets.ResNet(depth, stem="v1c", width=width)
        del self.backbone.fc  # the ImageNet classifier is not part of the segmentation net
        torch_resnets.dilate_(self.backbone, output_stride, multi_grid)
        expansion = 4 if torch_resnets.BLOCKS[depth][0] == "bottleneck" else 1
        self.head = Head(
            8 * width * expansion,
            width * expansion,
            aspp_channels,
            low_level_channels,
            decoder_channels,
            aspp_rates,
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1, bias=True)

    def forward(self, x):
        pred = self.classifier(self.head(self.backbone.features(x)))
        return F.interpolate(pred, size=x.shape[2:], mode="bilinear", align_corners=True)


def cps_step(left, right, x_l, x_u, labels, cps_weight):
    """The reference's CPS loss without CutMix: separate labeled / unlabeled forwards per net,
    CE on labels (ignore 255) for both nets + cps_weight * the two cross pseudo-label CEs over
    the concatenated labeled + unlabeled logits (one mean over all their pixels)."""
    pred_l = torch.cat([left(x_l), left(x_u)], dim=0)
    pred_r = torch.cat([right(x_l), right(x_u)], dim=0)
    n_l = x_l.shape[0]
    max_l, max_r = pred_l.argmax(1).detach(), pred_r.argmax(1).detach()
    cps = F.cross_entropy(pred_l, max_r) + F.cross_entropy(pred_r, max_l)
    sup_l = F.cross_entropy(pred_l[:n_l], labels, ignore_index=255)
    sup_r = F.cross_entropy(pred_r[:n_l], labels, ignore_index=255)
    return sup_l + sup_r + cps_weight * cps


def sgd(net, lr, momentum, weight_decay):
    """The reference's SGD: weight decay on conv / linear weights, none on biases and BN."""
    decay, no_decay = [], []
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            decay.append(module.weight)
            if module.bias is not None:
                no_decay.append(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            no_decay += [module.weight, module.bias]
    assert len(decay) + len(no_decay) == len(list(net.parameters()))
    groups = [dict(params=decay), dict(params=no_decay, weight_decay=0.0)]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def poly_lr(base_lr, it, total, power=0.9):
    return base_lr * (1 - it / total) ** power
