"""Time to the first frame: a fresh install (a clone of this checkout after ``make setup``)
against a warm one.

Every run is ``dmv-fast render`` of a short synthesized song (128 px, random weights, the CPU
plan) in a new process, through the CLI's own entry point; the time to the first frame runs
from starting the process to the first batch of frames reaching the encoder. Cases:

- ``warm``: this virtualenv after an untimed run (kernels compiled, ONNX Runtime's optimised
  graph saved beside the cached graph), repeated;
- ``fresh``: a clone of this checkout's ``HEAD`` in a temporary folder, set up with
  ``make setup`` (a new virtualenv, the package installed, ``dmv-fast warm-up``), its very
  first render; then ``fresh, second run``;
- ``fresh, no warm-up``: the fresh install's render with numba's cache pointed at an empty
  folder and the optimised graph removed, i.e. what its first render would cost had the
  set-up not compiled the kernels (every numba kernel compiled during the render);
- ``warm, no optimised graph``: a warm run after removing ONNX Runtime's optimised graph (the
  first session of a graph optimises it and saves it).

Also timed: building the generator session alone (``Generator`` on the cached graph, in this
process), from the optimised graph and from the graph itself, alternating.

The graph is exported once beforehand into a cache of the benchmark's own (an export is a
once-per-model cost), so every case finds it there. Results: ``startup_cpu.json`` and
``startup_cpu.md``, with the machine's flags and load.

    python benchmarks/bench_startup.py [--seconds 1] [--repeat 3] [--out benchmarks/results]
        [--keep /tmp/folder]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Runs the CLI in the child and notes when the first frames reach the encoder.
PROBE = """
import json, sys, time
result = sys.argv[1]
from dmv_fast.video import writer
real = writer.VideoWriter.write
def write(self, batch):
    if not getattr(write, "seen", False):
        write.seen = True
        with open(result, "w") as f:
            json.dump({"first_frame": time.time()}, f)
    return real(self, batch)
writer.VideoWriter.write = write
from dmv_fast.cli.app import main
main(sys.argv[2:])
"""


def render_args(song: Path, output: Path) -> list[str]:
    return ["render", "--song", str(song), "--resolution", "128", "--weights", "random",
            "--backend", "cpu", "--seed", "1", "--encoder", "x264", "-o", str(output),
            "--overwrite", "--quiet"]  # fmt: skip


def timed_render(python: Path, song: Path, work: Path, env: dict[str, str]) -> dict:
    """One render in a new process: seconds to the first frame and to the end."""
    result = work / "probe.json"
    result.unlink(missing_ok=True)
    cmd = [str(python), "-c", PROBE, str(result), *render_args(song, work / "out.mp4")]
    t0 = time.time()
    # In the work folder: a checkout in the current folder would shadow the installed package.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"render failed ({proc.returncode}): {proc.stderr[-2000:]}")
    first = json.loads(result.read_text())["first_frame"] - t0
    return {"first_frame_s": round(first, 2), "wall_s": round(wall, 2)}


def drop_optimized(cache: Path) -> None:
    for p in (cache / "onnx").glob("*.ort-*.onnx"):
        p.unlink()


def fresh_install(folder: Path) -> tuple[Path, float]:
    """A clone of this checkout's HEAD set up with ``make setup``; its python and the set-up's
    seconds."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    t0 = time.perf_counter()
    subprocess.run(["make", "-C", str(clone), "setup"], check=True, capture_output=True)
    return clone / ".venv" / "bin" / "python", time.perf_counter() - t0


def session_times(cache: Path, repeat: int) -> dict:
    """Seconds to build the CPU session of the plan's cached graph: from ONNX Runtime's
    optimised form of it (kept beside it) and from the graph itself (optimised on the way)."""
    from dmv_fast.model.cache import ensure_graph
    from dmv_fast.model.runtime import Generator
    from dmv_fast.settings.plan import resolve
    from dmv_fast.settings.spec import ModelSpec

    plan = resolve(ModelSpec(resolution=128, weights="random", backend="cpu"))
    path = ensure_graph(plan)
    times: dict[str, list[float]] = {"optimised graph kept": [], "graph optimised": []}
    Generator(path, plan=plan)  # untimed: the optimised form saved, the file in the OS cache
    for _ in range(repeat):
        for case in times:
            if case == "graph optimised":
                drop_optimized(cache)
            t0 = time.perf_counter()
            gen = Generator(path, plan=plan)
            times[case].append(round(time.perf_counter() - t0, 3))
            del gen
    return {
        k: {"runs": v, "best_s": min(v), "median_s": statistics.median(v)} for k, v in times.items()
    }


def summary(runs: list[dict]) -> dict:
    firsts = [r["first_frame_s"] for r in runs]
    return {
        "runs": runs,
        "first_frame_best_s": min(firsts),
        "first_frame_median_s": round(statistics.median(firsts), 2),
    }


def write_markdown(report: dict, path: Path) -> None:
    env, cases = report["environment"], report["cases"]
    warm = cases["warm"]["first_frame_median_s"]
    lines = [
        "# Time to the first frame: a fresh install against a warm one",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · flags "
        f"{', '.join(report['cpu_flags'])} · load average {report['load_before']} before, "
        f"{report['load_after']} after (a shared machine) · onnxruntime "
        f"{env['versions']['onnxruntime']}",
        "",
        f"`dmv-fast render` of a {report['song_seconds']:g} s synthesized song at 128 px "
        "(random weights, the CPU plan, its graph already exported), each run a new process; "
        "seconds from starting the process to the first frames reaching the encoder.",
        "",
        "| case | first frame, median s | best s | runs | behind a warm run, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, case in cases.items():
        firsts = ", ".join(f"{r['first_frame_s']:.1f}" for r in case["runs"])
        behind = case["first_frame_median_s"] - warm
        lines.append(
            f"| {name} | {case['first_frame_median_s']:.1f} | {case['first_frame_best_s']:.1f} "
            f"| {firsts} | {'' if name == 'warm' else f'{behind:+.1f}'} |"
        )
    sessions = report.get("session")
    if sessions:
        lines += [
            "",
            "Building the generator session alone (this virtualenv, the cached graph):",
            "",
            "| session from | median s | runs |",
            "|---|---:|---|",
        ]
        for name, case in sessions.items():
            runs = ", ".join(f"{t:.2f}" for t in case["runs"])
            lines.append(f"| {name} | {case['median_s']:.2f} | {runs} |")
    lines += [
        "",
        f"The fresh install took {report['setup_s']:.0f} s to set up (`make setup`: the "
        "virtualenv, the packages, `dmv-fast warm-up` compiling the kernels).",
        "",
        f"Reproduce: `python benchmarks/bench_startup.py --seconds {report['song_seconds']:g} "
        f"--repeat {report['repeat']}`",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="song length")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the repeatable cases")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from dmv_fast.bench import environment, write_song
    from dmv_fast.bench.machine import cpu_flags
    from dmv_fast.model.cache import ensure_graph
    from dmv_fast.settings.plan import resolve
    from dmv_fast.settings.spec import ModelSpec

    work = args.keep or Path(tempfile.mkdtemp(prefix="dmv-fast-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    env = {**os.environ, "DMV_FAST_CACHE": str(cache)}
    os.environ["DMV_FAST_CACHE"] = str(cache)
    try:
        song = write_song(work / "song.wav", args.seconds)
        ensure_graph(resolve(ModelSpec(resolution=128, weights="random", backend="cpu")))
        here = Path(sys.executable)
        print("fresh install: git clone + make setup", file=sys.stderr)
        fresh_python, setup_s = fresh_install(work)
        load_before = [round(x, 2) for x in os.getloadavg()]
        cases: dict[str, list[dict]] = {
            "fresh": [],
            "fresh, second run": [],
            "fresh, no warm-up": [],
            "warm": [],
            "warm, no optimised graph": [],
        }
        drop_optimized(cache)
        cases["fresh"].append(timed_render(fresh_python, song, work, env))
        cases["fresh, second run"].append(timed_render(fresh_python, song, work, env))
        timed_render(here, song, work, env)  # untimed: this virtualenv warm
        for i in range(args.repeat):
            print(f"round {i + 1}/{args.repeat}", file=sys.stderr)
            empty = Path(tempfile.mkdtemp(dir=work, prefix="numba-"))
            drop_optimized(cache)
            cases["fresh, no warm-up"].append(
                timed_render(fresh_python, song, work, {**env, "NUMBA_CACHE_DIR": str(empty)})
            )
            shutil.rmtree(empty, ignore_errors=True)
            cases["warm"].append(timed_render(here, song, work, env))
            drop_optimized(cache)
            cases["warm, no optimised graph"].append(timed_render(here, song, work, env))
        report = {
            "environment": environment(),
            "cpu_flags": cpu_flags(),
            "song_seconds": args.seconds,
            "repeat": args.repeat,
            "setup_s": round(setup_s, 1),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "cases": {k: summary(v) for k, v in cases.items()},
            "session": session_times(cache, max(3, args.repeat)),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / "startup_cpu.md")
    print((args.out / "startup_cpu.md").read_text())


if __name__ == "__main__":
    main()
