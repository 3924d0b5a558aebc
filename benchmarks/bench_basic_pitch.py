"""``mpe-ssl transcribe`` against Basic Pitch 0.4.0 (Spotify's ONNX model via onnxruntime).

In one run, on this machine:

1. speed and memory: whole-process wall time and peak resident memory (``ru_maxrss`` of the
   child, read in a fresh wrapper process per measurement) of transcribing the same ~5-minute
   file (test chorales concatenated), each pinned to 2 cores (``taskset -c 0,1``) with 2
   threads, the two programs alternating, ``--repeats`` times each; medians and ratios;
2. accuracy: frame-level multi-pitch F1 (mir_eval.multipitch) and note-level onset F1
   (mir_eval.transcription, ``offset_ratio=None``) of both on the test chorales rendered with
   the default instrument pool and with the held-out pool
   (``mpe_ssl.data.render.HELD_OUT_PROGRAMS``, timbres no training config uses). Ours is
   scored on its own ``.multipitch.txt``; Basic Pitch, which outputs notes, on its notes at
   the reference's frame times (``scoring.notes_to_multipitch``). Means over pieces.

Basic Pitch runs from its own virtual environment (``make bench-env``: ``.venv-bench``,
without TensorFlow) through its own CLI with ``--model-serialization onnx``.

    python benchmarks/bench_basic_pitch.py [--model PATH|packaged] [--pieces N] [--repeats R] [--write]

``--model``: a checkpoint, or ``packaged`` (``mpe-ssl transcribe`` without ``--ckpt``);
default ``$MPE_SSL_BENCH_MODEL``, else ``auto``: the packaged model when ``transcribe``
accepts no ``--ckpt``, else ``runs/demo/best.ckpt``, else a short demo fit made once into
``runs/bench/fallback-model/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
WORK = ROOT / "runs" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
DOC_BEGIN = "<!-- bench_basic_pitch: begin (written by benchmarks/bench_basic_pitch.py --write) -->"
DOC_END = "<!-- bench_basic_pitch: end -->"
THREADS = 2
CORES = "0,1"
AUDIO_SECONDS = 300.0
REPEATS = 5
#: Audio of the start-up measurement (s): what a process costs before the audio matters.
START_SECONDS = 2.0
#: The held-out pool if mpe_ssl.data.render has no HELD_OUT_PROGRAMS (older checkouts).
HELD_OUT_FALLBACK = (6, 11, 21, 22, 52, 65, 69, 74, 26, 61)


# ----------------------------------------------------------------------------- processes


def _measure_child(argv: list[str]) -> None:
    """Wrapper mode: run ``argv``, print its wall time, CPU time (user + system) and peak RSS
    (this process has no other child, so RUSAGE_CHILDREN is that command's; ru_maxrss is in
    KiB on Linux)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024,
                      "rc": proc.returncode, "stderr": proc.stderr[-2000:]}))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                 "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[name] = str(THREADS)
    env.pop("PYTHONPATH", None)
    return env


def pin_prefix() -> list[str]:
    """``taskset -c 0,1`` when taskset exists and this process may run on cores 0 and 1."""
    wanted = {int(c) for c in CORES.split(",")}
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity") and wanted <= os.sched_getaffinity(0):
        return ["taskset", "-c", CORES]
    return []


def measure(argv: list[str]) -> dict:
    """Run ``argv`` (pinned, 2 threads) under a fresh wrapper process; its wall time and peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--measure-child", "--", *pin_prefix(), *argv],
                         capture_output=True, text=True, env=child_env(), cwd=ROOT, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed (exit {result['rc']}):\n{result['stderr']}")
    return result


# ----------------------------------------------------------------------------- the two programs


def mpe_ssl_command(model: str, out: Path, inputs: list[Path], engine: str | None = None) -> list[str]:
    script = Path(sys.executable).with_name("mpe-ssl")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "mpe_ssl"]
    ckpt = [] if model == "packaged" else ["--ckpt", model]
    chosen = [] if engine is None else ["--engine", engine]
    return [*head, "transcribe", *map(str, inputs), *ckpt, *chosen, "--out", str(out)]


def mpe_ssl_engine(model: str) -> str:
    """The engine that ``mpe-ssl transcribe`` picks for ``model`` on this CPU (its ``--engine auto``)."""
    from mpe_ssl.transcribe_cli import choose_engine

    return choose_engine("auto", None if model == "packaged" else model, "cpu", 1, "float32")


def basic_pitch_command(bench_python: Path, out: Path, inputs: list[Path]) -> list[str]:
    script = bench_python.with_name("basic-pitch")
    return [str(script), "--model-serialization", "onnx", "--save-note-events", str(out), *map(str, inputs)]


def check_basic_pitch(bench_python: Path) -> dict:
    """What Basic Pitch loads here: its version, default model file, whether TensorFlow is
    importable, onnxruntime's version."""
    if not bench_python.exists():
        raise SystemExit(f"{bench_python}: missing; build it with `make bench-env`")
    code = ("import importlib.metadata as m, logging; logging.disable(logging.WARNING); import basic_pitch as b, "
            "onnxruntime as o, json; print(json.dumps({'basic_pitch': m.version('basic-pitch'), 'model': "
            "str(b.ICASSP_2022_MODEL_PATH.name), 'tensorflow': b.TF_PRESENT, 'onnxruntime': o.__version__}))")
    out = subprocess.run([str(bench_python), "-c", code], capture_output=True, text=True, check=True, env=child_env())
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if info["model"] != "nmp.onnx" or info["tensorflow"]:
        raise SystemExit(f"Basic Pitch would not run its ONNX model here: {info}")
    return info


# ----------------------------------------------------------------------------- model and data


def packaged_model_available() -> bool:
    """Whether ``mpe-ssl transcribe`` runs without ``--ckpt``: its usage shows ``[--ckpt``, and
    the packaged weights file (``mpe_ssl.pretrained.PACKAGED_MODEL``, where defined) exists."""
    out = subprocess.run([sys.executable, "-m", "mpe_ssl", "transcribe", "--help"], capture_output=True, text=True)
    if not re.search(r"\[--ckpt\b", out.stdout.split("\n\n")[0]):
        return False
    try:
        from mpe_ssl.pretrained import PACKAGED_MODEL
    except ImportError:
        return True
    return Path(PACKAGED_MODEL).is_file()


def resolve_model(choice: str) -> str:
    """A checkpoint path, or ``packaged``; see the module's doc for ``auto``."""
    if choice == "packaged":
        return choice
    if choice != "auto":
        if not Path(choice).is_file():
            raise SystemExit(f"--model {choice}: no such checkpoint")
        return str(Path(choice).absolute())
    if packaged_model_available():
        return "packaged"
    demo = ROOT / "runs" / "demo" / "best.ckpt"
    if demo.is_file():
        return str(demo)
    return str(fallback_model())


def fallback_model() -> Path:
    """A 40-step fit of the demo config, made once into runs/bench/fallback-model/."""
    folder = WORK / "fallback-model"
    found = sorted(folder.glob("runs/demo/version_*/best.ckpt"))
    if found:
        return found[-1].resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "data").exists():
        (ROOT / "data").mkdir(exist_ok=True)
        (folder / "data").symlink_to(ROOT / "data")
    print(f"no runs/demo/best.ckpt: fitting the demo config for 40 steps into {folder} (log: fit.log)", flush=True)
    with open(folder / "fit.log", "w") as log:
        subprocess.run([sys.executable, "-m", "mpe_ssl", "fit", "--config", "demo", "--trainer.max_steps", "40",
                        "--trainer.val_check_interval", "40"], cwd=folder, check=True, stdout=log, stderr=log)
    found = sorted(folder.glob("runs/demo/version_*/best.ckpt"))
    if not found:
        raise SystemExit(f"the fallback fit in {folder} left no best.ckpt")
    return found[-1].resolve()


def held_out_programs() -> tuple[int, ...]:
    try:
        from mpe_ssl.data.render import HELD_OUT_PROGRAMS
    except ImportError:
        return HELD_OUT_FALLBACK
    return tuple(HELD_OUT_PROGRAMS)


def render(pieces: int | None, programs: tuple[int, ...] | None) -> Path:
    """Render (or find cached) the test split; its root."""
    argv = [sys.executable, "-m", "mpe_ssl", "data", "render", "--train", "0", "--val", "0", "--workers", "2", "--quiet"]
    if pieces is not None:
        argv += ["--test", str(pieces)]
    if programs is not None:
        argv += ["--programs", ",".join(map(str, programs))]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"rendering failed: {out.stderr.strip()}")
    return ROOT / out.stdout.strip().splitlines()[-1]


def test_pieces(root: Path, pieces: int | None) -> list[Path]:
    manifest = json.loads((root / "manifest.json").read_text())
    dirs = [root / p["dir"] for p in manifest["pieces"] if p["split"] == "test"]
    return dirs if pieces is None else dirs[:pieces]


def link_inputs(pieces: list[Path], folder: Path) -> list[Path]:
    """``folder/<piece id>.wav`` -> each piece's mix.wav (so outputs are named by piece)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    links = []
    for piece in pieces:
        link = folder / f"{piece.name}.wav"
        link.symlink_to((piece / "mix.wav").resolve())
        links.append(link)
    return links


def long_audio(pieces: list[Path], path: Path, seconds: float = AUDIO_SECONDS) -> float:
    """``seconds`` of the pieces' mixtures, one after another (looped if short); its length."""
    import numpy as np
    import soundfile as sf

    sr = sf.info(str(pieces[0] / "mix.wav")).samplerate
    need, parts, total = int(seconds * sr), [], 0
    while total < need:
        for piece in pieces:
            audio, rate = sf.read(piece / "mix.wav", dtype="float32")
            assert rate == sr, f"{piece}: {rate} Hz, not {sr}"
            parts.append(audio)
            total += len(audio)
            if total >= need:
                break
    audio = np.concatenate(parts)[:need]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype="PCM_16")
    return len(audio) / sr


# ----------------------------------------------------------------------------- the benchmark


def accuracy(name: str, root: Path, pieces: int | None, model: str, bench_python: Path) -> dict:
    """Transcribe a split's test pieces with both (one process each) and score them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scoring

    dirs = test_pieces(root, pieces)
    inputs = link_inputs(dirs, WORK / name / "inputs")
    ours_out, theirs_out = WORK / name / "mpe_ssl", WORK / name / "basic_pitch"
    for folder in (ours_out, theirs_out):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    runs = {"mpe_ssl": measure(mpe_ssl_command(model, ours_out, inputs)),
            "basic_pitch": measure(basic_pitch_command(bench_python, theirs_out, inputs))}
    ours, theirs = [], []
    for piece in dirs:
        notes = scoring.read_mpe_ssl_notes(ours_out / f"{piece.name}.notes.csv")
        multipitch = scoring.read_multipitch(ours_out / f"{piece.name}.multipitch.txt")
        ours.append(scoring.score_piece(piece, notes, multipitch))
        theirs.append(scoring.score_piece(piece, scoring.read_basic_pitch_notes(
            theirs_out / f"{piece.name}_basic_pitch.csv")))
    return {"root": str(root.relative_to(ROOT)), "pieces": len(dirs), "runs": runs,
            "mpe_ssl": scoring.mean_scores(ours), "basic_pitch": scoring.mean_scores(theirs)}


def speed(audio: Path, model: str, bench_python: Path, repeats: int) -> dict:
    """Alternating whole-process runs on ``audio``; every run's wall time, CPU time, peak RSS.
    Where mpe-ssl runs the model through ONNX Runtime, the same model through torch
    (``--engine torch``) runs too, as ``mpe_ssl_torch``."""
    commands = {"mpe_ssl": lambda out: mpe_ssl_command(model, out, [audio]),
                "basic_pitch": lambda out: basic_pitch_command(bench_python, out, [audio])}
    if mpe_ssl_engine(model) == "onnx":
        commands["mpe_ssl_torch"] = lambda out: mpe_ssl_command(model, out, [audio], engine="torch")
    runs = {name: [] for name in commands}
    for repeat in range(repeats):
        order = list(commands) if repeat % 2 == 0 else list(commands)[::-1]
        for name in order:
            out = WORK / "speed" / audio.stem / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            runs[name].append(measure(commands[name](out)))
            print(f"  {audio.stem} {name:<12} run {repeat + 1}: {runs[name][-1]['wall_s']:.1f} s, "
                  f"CPU {runs[name][-1]['cpu_s']:.1f} s, {runs[name][-1]['peak_mib']:.0f} MiB", flush=True)
    return runs


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


#: how the report names mpe-ssl's engines
ENGINES = {"onnx": "ONNX Runtime (`mpe_ssl.onnx_model`, no torch imported)", "torch": "torch"}


def torch_engine_line(s: dict) -> list[str]:
    """The speed row of ``--engine torch`` where it ran beside the ONNX Runtime engine."""
    if "mpe_ssl_torch" not in s:
        return []
    wall, mem = _median(s["mpe_ssl_torch"], "wall_s"), _median(s["mpe_ssl_torch"], "peak_mib")
    t_wall, t_mem = _median(s["basic_pitch"], "wall_s"), _median(s["basic_pitch"], "peak_mib")
    return [f"The same model through torch (`--engine torch`, alternated in the same runs): median "
            f"{wall:.1f} s ({wall / t_wall:.2f} of Basic Pitch's), {mem:.0f} MiB ({mem / t_mem:.2f}).", ""]


def report(result: dict) -> str:
    """The markdown section: setup, speed table, accuracy table, command."""
    s = result["speed"]
    o_wall, t_wall = _median(s["mpe_ssl"], "wall_s"), _median(s["basic_pitch"], "wall_s")
    o_best, t_best = min(r["wall_s"] for r in s["mpe_ssl"]), min(r["wall_s"] for r in s["basic_pitch"])
    o_mem, t_mem = _median(s["mpe_ssl"], "peak_mib"), _median(s["basic_pitch"], "peak_mib")
    o_cpu, t_cpu = _median(s["mpe_ssl"], "cpu_s"), _median(s["basic_pitch"], "cpu_s")
    o_start = _median(result["startup"]["mpe_ssl"], "wall_s")
    t_start = _median(result["startup"]["basic_pitch"], "wall_s")
    bp = result["basic_pitch_info"]
    lines = [
        f"## {result['date']}, mpe-ssl vs Basic Pitch {bp['basic_pitch']} (ONNX), CPU",
        "",
        f"Machine: {result['machine']}; each program pinned to cores {CORES} (`taskset`) with "
        f"{THREADS} threads (OMP/MKL/OpenBLAS/Numba); Basic Pitch {bp['basic_pitch']}'s `{bp['model']}` "
        f"through onnxruntime {bp['onnxruntime']} (no TensorFlow), its own CLI. mpe-ssl model: "
        f"`{result['model_label']}`, engine: {ENGINES[result['engine']]} (its `--engine auto` here).",
        "",
        f"### Speed and memory: whole process, {result['audio_seconds']:.0f} s of audio (test chorales "
        f"concatenated), {len(s['mpe_ssl'])} alternating runs each",
        "",
        "| | mpe-ssl transcribe | Basic Pitch | ratio (ours / theirs) |",
        "|---|---|---|---|",
        f"| wall time, median (s) | {o_wall:.1f} | {t_wall:.1f} | {o_wall / t_wall:.2f} |",
        f"| wall time, best (s) | {o_best:.1f} | {t_best:.1f} | {o_best / t_best:.2f} |",
        f"| real-time factor, median | {o_wall / result['audio_seconds']:.3f} | "
        f"{t_wall / result['audio_seconds']:.3f} | |",
        f"| CPU time (user + system), median (s) | {o_cpu:.1f} | {t_cpu:.1f} | {o_cpu / t_cpu:.2f} |",
        f"| peak RSS, median (MiB) | {o_mem:.0f} | {t_mem:.0f} | {o_mem / t_mem:.2f} |",
        f"| start-up: wall time for {result['startup_seconds']:g} s of audio, median (s) | {o_start:.1f} | "
        f"{t_start:.1f} | {o_start / t_start:.2f} |",
        "",
        *torch_engine_line(s),
        "Every run (wall s / CPU s / MiB): " + "; ".join(
            f"{label} " + ", ".join(f"{r['wall_s']:.1f}/{r['cpu_s']:.1f}/{r['peak_mib']:.0f}" for r in s[key])
            for key, label in (("mpe_ssl", "mpe-ssl"), ("mpe_ssl_torch", "mpe-ssl --engine torch"),
                               ("basic_pitch", "Basic Pitch")) if key in s) + ".",
        "",
        "Wall time includes start-up (imports, model loading) and writing the outputs (ours: "
        "multi-pitch text, notes CSV, MIDI; Basic Pitch: MIDI, notes CSV).",
        "",
        "### Accuracy: mean over the test chorales (`mpe-ssl data render`, seed 0)",
        "",
        "Frame: mir_eval.multipitch (half-semitone tolerance); Basic Pitch's notes taken as active "
        "pitches at the reference frames. Note: mir_eval.transcription onsets only (50 ms, 50 cents, "
        "`offset_ratio=None`). P / R / F1.",
        "",
        "| split | pieces | level | mpe-ssl P / R / **F1** | Basic Pitch P / R / **F1** |",
        "|---|---|---|---|---|",
    ]
    for label, acc in result["accuracy"].items():
        for level in ("frame", "note"):
            o, t = acc["mpe_ssl"][level], acc["basic_pitch"][level]
            lines.append(f"| {label} | {acc['pieces']} | {level} | {o['precision']:.3f} / {o['recall']:.3f} / "
                         f"**{o['f1']:.3f}** | {t['precision']:.3f} / {t['recall']:.3f} / **{t['f1']:.3f}** |")
    lines += [
        "",
        f"Splits: *default pool*: `mpe-ssl data render --train 0 --val 0` (programs "
        f"{', '.join(map(str, result['programs']['default pool']))}); *held-out pool*: the same pieces with "
        f"`--programs {','.join(map(str, result['programs']['held-out pool']))}` "
        "(`mpe_ssl.data.render.HELD_OUT_PROGRAMS`). Each split is transcribed by one process per "
        "program (not alternated, so only roughly comparable): " + "; ".join(
            f"{label}: mpe-ssl {acc['runs']['mpe_ssl']['wall_s']:.0f} s, {acc['runs']['mpe_ssl']['peak_mib']:.0f} MiB, "
            f"Basic Pitch {acc['runs']['basic_pitch']['wall_s']:.0f} s, {acc['runs']['basic_pitch']['peak_mib']:.0f} MiB"
            for label, acc in result["accuracy"].items()) + ".",
        "",
        f"Command: `make bench BENCH_ARGS=--write` (this comparison alone: `{result['command']}`).",
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    """Replace the marked section of docs/benchmarks.md (append it if absent)."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{DOC_BEGIN}\n{section}\n{DOC_END}"
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def run(model: str = "auto", pieces: int | None = None, repeats: int = REPEATS, bench_python: Path | None = None,
        write: bool = False, seconds: float = AUDIO_SECONDS) -> dict:
    bench_python = bench_python or BENCH_VENV / "bin" / "python"
    info = check_basic_pitch(bench_python)
    model = resolve_model(model)
    model_label = "packaged (transcribe without --ckpt)" if model == "packaged" else os.path.relpath(model, ROOT)
    if model != "packaged" and Path(model).is_symlink():
        model_label += f" -> {os.path.relpath(Path(model).resolve(), ROOT)}"
    print(f"Basic Pitch {info['basic_pitch']}: {info['model']} via onnxruntime {info['onnxruntime']} "
          f"(TensorFlow importable: {info['tensorflow']}); mpe-ssl model: {model_label}", flush=True)
    from mpe_ssl.data.render import DEFAULT_PROGRAMS

    programs = {"default pool": tuple(DEFAULT_PROGRAMS), "held-out pool": held_out_programs()}
    roots = {"default pool": render(pieces, None), "held-out pool": render(pieces, programs["held-out pool"])}
    result = {"date": datetime.date.today().isoformat(), "model": model, "model_label": model_label,
              "engine": mpe_ssl_engine(model),
              "basic_pitch_info": info, "programs": programs,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU used", "accuracy": {}}
    for label, root in roots.items():
        print(f"accuracy, {label} ({root.relative_to(ROOT)}): transcribing with both ...", flush=True)
        acc = result["accuracy"][label] = accuracy(label.replace(" ", "-"), root, pieces, model, bench_python)
        for name in ("mpe_ssl", "basic_pitch"):
            f, n = acc[name]["frame"], acc[name]["note"]
            print(f"  {name:<12} frame P {f['precision']:.3f} R {f['recall']:.3f} F1 {f['f1']:.3f} | "
                  f"note-onset P {n['precision']:.3f} R {n['recall']:.3f} F1 {n['f1']:.3f} "
                  f"({acc['pieces']} pieces; {acc['runs'][name]['wall_s']:.0f} s, "
                  f"{acc['runs'][name]['peak_mib']:.0f} MiB)", flush=True)
    audio = WORK / "audio_5min.wav"
    result["audio_seconds"] = long_audio(test_pieces(roots["default pool"], None), audio, seconds)
    print(f"speed: {result['audio_seconds']:.0f} s of audio, {repeats} alternating runs each, pinned "
          f"{' '.join(pin_prefix()) or '(taskset unavailable)'}, {THREADS} threads", flush=True)
    result["speed"] = speed(audio, model, bench_python, repeats)
    short = WORK / "audio_start.wav"
    result["startup_seconds"] = long_audio(test_pieces(roots["default pool"], None), short, START_SECONDS)
    result["startup"] = speed(short, model, bench_python, repeats)
    args = [f"--model {model}" if model == "packaged" else f"--model {os.path.relpath(model, ROOT)}",
            f"--pieces {pieces}" if pieces else "", f"--repeats {repeats}" if repeats != REPEATS else "",
            f"--seconds {seconds:g}" if seconds != AUDIO_SECONDS else ""]
    result["command"] = " ".join(["python benchmarks/bench_basic_pitch.py", *filter(None, args), "--write"])
    section = report(result)
    print(section)
    (WORK / "result.json").write_text(json.dumps(result, indent=1))
    if write:
        write_doc(section)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("MPE_SSL_BENCH_MODEL", "auto"),
                        help="checkpoint, 'packaged' or 'auto' (default: $MPE_SSL_BENCH_MODEL or auto)")
    parser.add_argument("--pieces", type=int, default=None, help="first N test pieces per split (default: all)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"timed runs of each program (default {REPEATS})")
    parser.add_argument("--seconds", type=float, default=AUDIO_SECONDS,
                        help=f"length of the timed audio (default {AUDIO_SECONDS:g})")
    parser.add_argument("--bench-python", type=Path, default=BENCH_VENV / "bin" / "python",
                        help="python of the venv with Basic Pitch (default .venv-bench/bin/python)")
    parser.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure-child"]:
        _measure_child(argv[2:] if argv[1:2] == ["--"] else argv[1:])
        return
    args = parse_args(argv)
    run(args.model, args.pieces, args.repeats, args.bench_python, args.write, args.seconds)


if __name__ == "__main__":
    main()
