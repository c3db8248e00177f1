"""Loads the checkpoints written by `pytorch_export.rs` into PyTorch re-implementations of each
architecture (following the code each model's doc comment cites) with strict=True and checks the
logits in eval and train mode. Needs only torch (safetensors files are parsed by hand).

    ZOO_EXPORT_DIR=/tmp/zoo-export cargo test -p zoo-models --test pytorch_export -- --ignored
    python models/tests/pytorch_compat.py /tmp/zoo-export
"""
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

DT = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}


def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DT[v["dtype"]]) if b > a else torch.zeros(0, dtype=DT[v["dtype"]])
        out[k] = t.reshape(v["shape"]).clone()
    return out


class Mlp(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x):
        for l in self.layers[:-1]:
            x = F.relu(l(x))
        return self.layers[-1](x)


class LeNet(nn.Module):  # Ren et al.: conv SAME -> maxpool 3x3/2 SAME -> relu, x3; fc 100; fc
    def __init__(self, nc):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 16, 5, padding=2), nn.Conv2d(16, 32, 5, padding=2), nn.Conv2d(32, 64, 5, padding=2)
        self.fc1, self.fc2 = nn.Linear(1024, 100), nn.Linear(100, nc)

    @staticmethod
    def pool(x):
        h = x.shape[2]
        tot = max((-(-h // 2) - 1) * 2 + 3 - h, 0)
        x = F.pad(x, (tot // 2, tot - tot // 2, tot // 2, tot - tot // 2), value=float("-inf"))
        return F.max_pool2d(x, 3, 2)

    def forward(self, x):
        for c in (self.conv1, self.conv2, self.conv3):
            x = F.relu(self.pool(c(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class BasicA(nn.Module):  # Idelbayev option A
    def __init__(self, i, o, s):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o)
        self.conv2, self.bn2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.short = (lambda x: x) if (s == 1 and i == o) else (lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, o // 4, o // 4)))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth, nc):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        i = 16
        for l, o in enumerate([16, 32, 64]):
            blocks = []
            for j in range(n):
                blocks.append(BasicA(i, o, 2 if (l > 0 and j == 0) else 1))
                i = o
            setattr(self, f"layer{l+1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, nc)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean((2, 3)))


class WrnBlock(nn.Module):  # xternalz
    def __init__(self, i, o, s):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, s, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.equal = i == o
        if not self.equal:
            self.convShortcut = nn.Conv2d(i, o, 1, s, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = F.relu(self.bn1(x))
            out = x
        else:
            out = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return (x if self.equal else self.convShortcut(x)) + out


class Group(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layer = nn.Sequential(*layers)

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, k, nc):
        super().__init__()
        n = (depth - 4) // 6
        w = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        for b in range(3):
            setattr(self, f"block{b+1}", Group([WrnBlock(w[b] if i == 0 else w[b + 1], w[b + 1], (1 if b == 0 else 2) if i == 0 else 1) for i in range(n)]))
        self.bn1, self.fc = nn.BatchNorm2d(w[3]), nn.Linear(w[3], nc)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn1(x)).mean((2, 3)))


class PreActBlock(nn.Module):  # kuangliu
    def __init__(self, i, o, s):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, o, 3, s, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(o), nn.Conv2d(o, o, 3, 1, 1, bias=False)
        if s != 1 or i != o:
            self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + sc


class PreAct18(nn.Module):
    def __init__(self, nc):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        i = 64
        for l, o in enumerate([64, 128, 256, 512]):
            setattr(self, f"layer{l+1}", nn.Sequential(PreActBlock(i, o, 1 if l == 0 else 2), PreActBlock(o, o, 1)))
            i = o
        self.linear = nn.Linear(512, nc)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(F.avg_pool2d(x, 4).flatten(1))


class DenseLayer(nn.Module):
    def __init__(self, i, g):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, g, 3, 1, 1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv1(F.relu(self.bn1(x)))], 1)


class Trans(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class DenseNet(nn.Module):  # andreasveit/densenet-pytorch, non-BC
    def __init__(self, depth, g, nc):
        super().__init__()
        n = (depth - 4) // 3
        c = 16
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        for b in range(1, 4):
            ls = []
            for _ in range(n):
                ls.append(DenseLayer(c, g))
                c += g
            setattr(self, f"block{b}", Group(ls))
            if b < 3:
                setattr(self, f"trans{b}", Trans(c))
        self.bn1, self.fc = nn.BatchNorm2d(c), nn.Linear(c, nc)

    def forward(self, x):
        x = self.trans1(self.block1(self.conv1(x)))
        x = self.block3(self.trans2(self.block2(x)))
        return self.fc(F.relu(self.bn1(x)).mean((2, 3)))


class TvBasic(nn.Module):
    expansion = 1

    def __init__(self, i, p, s, groups, wpg):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(i, p, 3, s, 1, bias=False), nn.BatchNorm2d(p)
        self.conv2, self.bn2 = nn.Conv2d(p, p, 3, 1, 1, bias=False), nn.BatchNorm2d(p)
        if s != 1 or i != p:
            self.downsample = nn.Sequential(nn.Conv2d(i, p, 1, s, bias=False), nn.BatchNorm2d(p))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.downsample(x) if hasattr(self, "downsample") else x))


class TvBottleneck(nn.Module):
    expansion = 4

    def __init__(self, i, p, s, groups, wpg):
        super().__init__()
        w = p * wpg // 64 * groups
        self.conv1, self.bn1 = nn.Conv2d(i, w, 1, bias=False), nn.BatchNorm2d(w)
        self.conv2, self.bn2 = nn.Conv2d(w, w, 3, s, 1, groups=groups, bias=False), nn.BatchNorm2d(w)
        self.conv3, self.bn3 = nn.Conv2d(w, p * 4, 1, bias=False), nn.BatchNorm2d(p * 4)
        if s != 1 or i != p * 4:
            self.downsample = nn.Sequential(nn.Conv2d(i, p * 4, 1, s, bias=False), nn.BatchNorm2d(p * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.downsample(x) if hasattr(self, "downsample") else x))


class TvResNet(nn.Module):
    def __init__(self, block, layers, nc, groups=1, wpg=64):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        i = 64
        for l, p in enumerate([64, 128, 256, 512]):
            bs = []
            for j in range(layers[l]):
                bs.append(block(i, p, 2 if (l > 0 and j == 0) else 1, groups, wpg))
                i = p * block.expansion
            setattr(self, f"layer{l+1}", nn.Sequential(*bs))
        self.fc = nn.Linear(512 * block.expansion, nc)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


class VNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(1, 100), nn.Linear(100, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear2(F.relu(self.linear1(x))))


MODELS = {
    "mlp": lambda: Mlp([20, 30, 30, 5]),
    "lenet": lambda: LeNet(10),
    "resnet20": lambda: ResNetCifar(20, 10),
    "wrn16_2": lambda: WideResNet(16, 2, 10),
    "preact18": lambda: PreAct18(10),
    "densenet13": lambda: DenseNet(13, 12, 10),
    "resnet10": lambda: TvResNet(TvBasic, [1, 1, 1, 1], 7),
    "resnext_small": lambda: TvResNet(TvBottleneck, [1, 2, 1, 1], 7, 32, 4),
    "vnet": VNet,
}


def main(d):
    torch.set_grad_enabled(False)
    failed = 0
    for name, make in MODELS.items():
        m = make()
        m.load_state_dict(load(f"{d}/{name}.safetensors"), strict=True)
        io = load(f"{d}/{name}.io.safetensors")
        for mode in ("eval", "train"):
            if mode not in io:
                continue
            m.train(mode == "train")
            y = m(io["x"])
            err = ((y - io[mode]).abs().max() / io[mode].abs().max().clamp_min(1e-6)).item()
            ok = err < 1e-4
            failed += not ok
            print(f"{name:14s} {mode:5s} max rel err {err:.2e} {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/zoo-export")
