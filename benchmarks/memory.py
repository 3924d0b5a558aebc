"""Peak memory of one training step of each shipped config, and of transcription, on CPU.

Each measurement runs in a fresh process and reports its peak resident memory (ru_maxrss)
and the part of it above the process's memory just before the step (imports, data and model
loaded): the step's own cost. Writes docs/performance.md when given --write.

    python benchmarks/memory.py --write
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def train_step(config: str, overrides: list[str]) -> dict:
    """One forward + backward of the config's first training batch (in this process)."""
    import torch

    from mpe_ssl.cli import lightning_cli

    cli = lightning_cli(["--config", config, *overrides], run=False)
    system, data = cli.model, cli.datamodule
    data.prepare_data()
    data.setup("fit")
    batch = {name: next(iter(loader)) for name, loader in data.train_dataloader().items()}
    if hasattr(system, "drum_bank"):
        system.drum_bank = data.drum_bank
    system.train()
    before = _current_mib()
    loss = system.training_step(batch, 0)
    loss.backward()
    samples = sum(len(part["audio"]) for part in batch.values())
    seconds = batch[next(iter(batch))]["audio"].shape[1] / 22050
    return {"peak_mib": _rss_mib(), "before_mib": before, "samples": samples, "excerpt_s": round(seconds, 2),
            "threads": torch.get_num_threads()}


def transcription(seconds: float, engine: str) -> dict:
    """``mpe-ssl transcribe --engine ENGINE`` (the shipped model) on ``seconds`` of the test
    chorales end to end: the whole process's peak resident memory and wall time
    (``/usr/bin/time``-like, via ``wait4``), pinned to 2 cores as the Basic Pitch bench is."""
    import os
    import tempfile
    import time

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_basic_pitch import child_env, long_audio, pin_prefix, render, test_pieces

    folder = Path(tempfile.mkdtemp(prefix="mpe-ssl-memory-"))
    audio = folder / f"{seconds:g}s.wav"
    long_audio(test_pieces(render(None, None), None), audio, seconds)
    argv = [*pin_prefix(), sys.executable, "-m", "mpe_ssl", "transcribe", str(audio), "--out", str(folder),
            "--engine", engine]
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"mpe-ssl transcribe failed on {audio}")
    return {"peak_mib": usage.ru_maxrss / 1024, "wall_s": time.perf_counter() - start, "seconds": seconds}


def measure(kind: str, *args: str) -> dict:
    """Run one measurement in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--one", kind, *args], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


#: lengths of audio transcribed (s)
TRANSCRIBE_SECONDS = (30.0, 120.0, 600.0)
#: the engines of mpe-ssl transcribe (onnx: its default on a CPU)
ENGINES = ("onnx", "torch")

STEPS = {
    "demo (SupervisedMPE, 8 x 2 s)": ("demo", []),
    "ssmpe (SelfSupervisedMPE, 8 + 16 x 2 s, 4 network passes)": ("ssmpe", []),
    "ssmpe, activation_checkpointing: false": ("ssmpe", ["--model.init_args.activation_checkpointing", "false"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="write docs/performance.md")
    args, overrides = parser.parse_known_args()
    if args.one:
        kind, *rest = args.one + overrides
        result = train_step(rest[0], rest[1:]) if kind == "step" else transcription(float(rest[0]), rest[1])
        print(json.dumps(result))
        return
    rows = []
    for label, (config, overrides) in STEPS.items():
        r = measure("step", config, *overrides)
        rows.append(f"| {label} | {r['peak_mib'] / 1024:.2f} | {(r['peak_mib'] - r['before_mib']) / 1024:.2f} |")
        print(rows[-1], flush=True)
    transcribe_rows = []
    for seconds in TRANSCRIBE_SECONDS:
        for engine in ENGINES:
            r = transcription(seconds, engine)
            transcribe_rows.append(f"| {seconds:g} s | {engine} | {r['peak_mib']:.0f} | {r['wall_s']:.1f} |")
            print(transcribe_rows[-1], flush=True)
    text = "\n".join([
        "# Memory",
        "",
        "Peak resident memory on CPU, each figure from a fresh process (`ru_maxrss`); *step* is the",
        "part above the process's memory just before the measured work (Python, torch, the model",
        "and the batch already loaded). Command: `python benchmarks/memory.py --write`.",
        "",
        "## One training step of each shipped config (forward + backward, default batch)",
        "",
        "| config | peak (GiB) | step (GiB) |",
        "|---|---|---|",
        *rows,
        "",
        "## Transcription: `mpe-ssl transcribe`, the shipped model, whole process",
        "",
        "Test chorales end to end, one file each length; pinned to 2 cores; both engines (`onnx`,",
        "ONNX Runtime without torch, the default on a CPU; `torch`). The file is read,",
        "transcribed and decoded a chunk at a time (`AudioReader`, `salience_chunks`,",
        "`SalienceDecoder`), so the peak stays flat in the file's length; the wall time is",
        "only a rough figure here (speed against Basic Pitch: `docs/benchmarks.md`).",
        "",
        "| audio | engine | peak RSS (MiB) | wall (s) |",
        "|---|---|---|---|",
        *transcribe_rows,
        "",
    ])
    if args.write:
        (ROOT / "docs" / "performance.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
