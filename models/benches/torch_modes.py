"""PyTorch's train step in several CPU modes, for `cargo bench -p zoo-models --bench train_step`.

The nets, batches and step are those of `torch_bench.py` (the shared PyTorch reference, imported
from the folder given by --bench-dir or $TORCH_BENCH_DIR, never copied here): forward +
cross-entropy + backward + plain SGD (lr 0.01), seed 42, 2 threads. Modes:

  eager                  NCHW, as torch_bench.py runs it
  channels_last          model and input `.to(memory_format=torch.channels_last)` (conv nets only:
                         the MLP's input is 2-D and has no channels-last form)
  compile                `torch.compile(model)` (inductor), NCHW
  channels_last_compile  both

Each mode has its own copy of the net and optimiser (same initial weights and batch). Compilation
happens once, at set-up, and is timed there (`compile_s`: the first step, which compiles the
forward and the backward graphs), never in the step times.

usage:
  torch_modes.py [--bench-dir DIR] [--threads N] serve MODEL MODE[,MODE...]
      Sets up the modes (printing one JSON line: {"ready": ..., "setup": {mode: {...}}}), then
      answers each stdin line "MODE SECONDS" with one JSON line of torch_bench.py's shape
      (step_times, fwd, bwd, upd, last_loss, ...; plus "mode"), or {"mode", "error"}. EOF ends.
  torch_modes.py [--bench-dir DIR] [--threads N] run MODEL MODE SECONDS
      Set-up and one timed block, one JSON line (with "setup" added).
  torch_modes.py [--bench-dir DIR] [--threads N] sgemm SECONDS
      torch_bench.py's sgemm (1024^3) line.
"""
import argparse
import importlib
import json
import os
import sys
import time
import traceback

MODES = ("eager", "channels_last", "compile", "channels_last_compile")


def load_reference(bench_dir):
    if not bench_dir:
        sys.exit("torch_modes.py: give --bench-dir or set TORCH_BENCH_DIR (the folder of torch_bench.py)")
    sys.path.insert(0, os.path.abspath(bench_dir))
    return importlib.import_module("torch_bench")


def model_spec(tb, name):
    # As torch_bench.bench: constructor, batch size, input shape.
    return {
        "mlp": (tb.mlp, 100, (784,)),
        "lenet": (tb.lenet, 100, (1, 28, 28)),
        "resnet32": (tb.ResNet32, 128, (3, 32, 32)),
    }[name]


class Mode:
    """One net + batch + optimiser in one mode; `step()` is torch_bench.bench's step."""

    def __init__(self, tb, torch, model_name, mode):
        self.torch, self.F = torch, torch.nn.functional
        self.mode, self.model_name = mode, model_name
        ctor, bsz, shape = model_spec(tb, model_name)
        if "channels_last" in mode and len(shape) != 3:
            raise ValueError(f"{model_name} has no channels-last form (its input is {1 + len(shape)}-D)")
        torch.manual_seed(42)  # the same weights and batch as torch_bench.py, in every mode
        net = ctor().train()
        x = torch.randn(bsz, *shape)
        self.y = torch.randint(0, 10, (bsz,))
        if "channels_last" in mode:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.x, self.net = x, net
        self.params = sum(p.numel() for p in net.parameters())
        self.opt = torch.optim.SGD(net.parameters(), lr=0.01)
        self.run = torch.compile(net) if mode.endswith("compile") else net
        self.compile_s = None
        self.warmup_steps = 0
        self.last_loss = float("nan")
        if mode.endswith("compile"):
            t = time.perf_counter()
            self.step()  # compiles the forward and (at its backward) the backward graph
            self.compile_s = time.perf_counter() - t

    def step(self):
        t = time.perf_counter()
        loss = self.F.cross_entropy(self.run(self.x), self.y)
        l = loss.item()
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        self.last_loss = l
        return t1 - t, t2 - t1, t3 - t2

    def timed(self, secs, warm_secs=2.0):
        # As torch_bench.bench: >= 2 steps and >= 2 s of warm-up, then >= secs and >= 3 steps.
        t0, w = time.perf_counter(), 0
        while w < 2 or time.perf_counter() - t0 < warm_secs:
            self.step()
            w += 1
        self.warmup_steps += w
        times, tf, tb, tu = [], [], [], []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < secs or len(times) < 3:
            t = time.perf_counter()
            a, b, c = self.step()
            times.append(time.perf_counter() - t)
            tf.append(a), tb.append(b), tu.append(c)
        return {"fw": "torch", "model": self.model_name, "mode": self.mode,
                "threads": self.torch.get_num_threads(), "params": self.params,
                "warmup_steps": w, "last_loss": self.last_loss, "compile_s": self.compile_s,
                "step_times": times, "fwd": tf, "bwd": tb, "upd": tu}


def setup(tb, torch, model_name, modes):
    out, info = {}, {}
    for m in modes:
        if m not in MODES:
            info[m] = {"error": f"unknown mode (known: {', '.join(MODES)})"}
            continue
        t = time.perf_counter()
        try:
            out[m] = Mode(tb, torch, model_name, m)
            info[m] = {"setup_s": time.perf_counter() - t, "compile_s": out[m].compile_s}
        except Exception as e:  # a failed compile is a result to report, not a crash
            info[m] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
            traceback.print_exc(file=sys.stderr)
    return out, info


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", default=os.environ.get("TORCH_BENCH_DIR"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("what", choices=["serve", "run", "sgemm"])
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args()
    tb = load_reference(a.bench_dir)  # sets 2 threads on import
    import torch

    torch.set_num_threads(a.threads)
    if a.what == "sgemm":
        tb.sgemm(float(a.rest[0]) if a.rest else 5.0)
        return
    if a.what == "run":
        model_name, mode, secs = a.rest[0], a.rest[1], float(a.rest[2])
        modes, info = setup(tb, torch, model_name, [mode])
        if mode not in modes:
            emit({"mode": mode, "error": info[mode]["error"], "setup": info})
            sys.exit(1)
        r = modes[mode].timed(secs)
        r["setup"] = info
        emit(r)
        return
    model_name, mode_list = a.rest[0], a.rest[1].split(",")
    modes, info = setup(tb, torch, model_name, mode_list)
    emit({"ready": True, "model": model_name, "torch": torch.__version__, "setup": info})
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        mode, secs = parts[0], float(parts[1])
        if mode not in modes:
            emit({"mode": mode, "error": info.get(mode, {}).get("error", "mode not set up")})
            continue
        try:
            emit(modes[mode].timed(secs))
        except Exception as e:
            emit({"mode": mode, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]})


if __name__ == "__main__":
    main()
