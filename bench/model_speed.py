"""How fast the model alone runs on this CPU: LiteRT in process, float32 vs int8, one thread vs two, dense vs
pruned and clustered, batch 1 vs 8, and two requests at once; the ceiling every server figure is held against.

MobileNetV2 at the two sizes users deploy here: alpha 0.35 at 96x96x3 and the published 1.0 at 224x224x3, both
random init (speed does not depend on the weights' values, and nothing can be downloaded). The pruned and
clustered forms get the weights those steps leave (80% of each kernel's smallest weights zero; 16 values per
kernel), so the converter sees the same sparsity and the same few values. Each figure is the median (min–max)
of several repeats of many single-sample calls through `LiteRTClassifier`, the class the server uses.
Writes bench/RESULTS.md and README's block `model-speed`, which `serve`'s and `evaluate`'s `threads`
defaults are read against.

    python bench/model_speed.py [--repeats 5] [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from results import spread, write_readme_block, write_section  # noqa: E402
from steps.core.timing import latency_percentiles_ms  # noqa: E402
from steps.modeling.litert_runtime import LiteRTClassifier  # noqa: E402
from steps.modeling.measure import sizes  # noqa: E402

SIZES = ((0.35, 96), (1.0, 224))  # (alpha, side)
SPARSITY = 0.8
CLUSTERS = 16
CONCURRENT_SECONDS = 3.0


def magnitude_pruned(model, sparsity: float):
    """Zero each kernel's smallest weights, as pruning leaves them (the copy's, never the model's own)."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel, *rest = layer.get_weights()
            cut = np.quantile(np.abs(kernel), sparsity)
            layer.set_weights([np.where(np.abs(kernel) <= cut, 0.0, kernel).astype(kernel.dtype), *rest])
    return copy


def clustered(model, clusters: int):
    """Each kernel's weights replaced by the nearest of `clusters` values (its quantiles), as clustering leaves
    them."""
    import tf_keras as keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel, *rest = layer.get_weights()
            centroids = np.quantile(kernel, np.linspace(0, 1, clusters))
            nearest = np.abs(kernel[..., None] - centroids).argmin(axis=-1)
            layer.set_weights([centroids[nearest].astype(kernel.dtype), *rest])
    return copy


def deployables(alpha: float, side: int) -> dict[str, bytes]:
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite

    model = build_model("mobilenetv2", (side, side, 3), 10, width=32, alpha=alpha)
    representative = np.random.default_rng(0).random((16, side, side, 3), np.float32)
    return {
        "float32": to_tflite(model, "none"),
        "int8": to_tflite(model, "int8", representative),
        "pruned int8": to_tflite(magnitude_pruned(model, SPARSITY), "int8", representative),
        "clustered int8": to_tflite(clustered(model, CLUSTERS), "int8", representative),
    }


def latencies(
    forms: dict[str, bytes], sample: np.ndarray, runs: int, repeats: int, threads: tuple[int, ...] = (1, 2)
) -> dict[tuple[str, int], dict[str, list[float]]]:
    """p50 and p99 of single-sample calls of each form at each thread count, keyed (form, threads): every repeat
    in a fresh process, the forms taking turns. One process is not enough: float32 MobileNetV2 1.0/224 held
    within 1% across repeats inside a process but moved between 6.0 and 7.3 ms from one process to the next
    (int8 stayed at 3.8-4.1 ms), so a ratio timed in one process read 0.59x in one run and 0.66x in another.
    A repeat is one process, and the median is across processes."""
    found = {(name, count): {"p50": [], "p99": []} for name in forms for count in threads}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        np.save(folder / "sample.npy", sample)
        paths = {name: folder / f"form{index}.tflite" for index, name in enumerate(forms)}
        for name, tflite in forms.items():
            paths[name].write_bytes(tflite)
        for repeat in range(repeats):
            print(f"model_speed: {len(forms)} forms in fresh processes, repeat {repeat + 1}/{repeats}", flush=True)
            for name, count in found:
                command = [sys.executable, __file__, "--time-one", str(paths[name]), "--threads", str(count)]
                command += ["--sample", str(folder / "sample.npy"), "--runs", str(runs)]
                printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                p50, p99 = map(float, printed.split())
                found[name, count]["p50"].append(p50)
                found[name, count]["p99"].append(p99)
    return found


def time_one(path: Path, threads: int, sample: np.ndarray, runs: int) -> tuple[float, float]:
    """p50 and p99 (ms) of `runs` single-sample calls in this process, after 20 untimed ones."""
    classifier = LiteRTClassifier(path.read_bytes(), threads)
    p50, _, p99 = latency_percentiles_ms(lambda: classifier.predict_batch(sample), 20, runs)
    return p50, p99


def per_sample_ms(tflite: bytes, batch: np.ndarray, runs: int, repeats: int) -> list[float]:
    """Median time of one call on `batch`, divided by its size."""
    classifier = LiteRTClassifier(tflite)
    return [
        latency_percentiles_ms(lambda: classifier.predict_batch(batch), 5, max(runs // len(batch), 20))[0] / len(batch)
        for _ in range(repeats)
    ]


def concurrent_throughput(tflite: bytes, threads: int, sample: np.ndarray, callers: int, repeats: int) -> list[float]:
    """Calls per second of `callers` threads calling at once, each on its own interpreter of `threads` threads
    (what the server does under load)."""
    classifier = LiteRTClassifier(tflite, threads)
    results = []
    for _ in range(repeats):
        counts = [0] * callers
        stop = threading.Event()

        def call(index: int) -> None:
            classifier.predict_batch(sample)  # builds this thread's interpreter before the clock starts
            barrier.wait()
            while not stop.is_set():
                classifier.predict_batch(sample)
                counts[index] += 1

        barrier = threading.Barrier(callers + 1)
        workers = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        time.sleep(CONCURRENT_SECONDS)
        stop.set()
        for worker in workers:
            worker.join()
        results.append(sum(counts) / (time.perf_counter() - start))
    return results


def measure(alpha: float, side: int, runs: int, repeats: int) -> dict:
    print(f"model_speed: MobileNetV2 {alpha}/{side}: converting 4 forms", flush=True)
    forms = deployables(alpha, side)
    sample = np.random.default_rng(1).random((1, side, side, 3), np.float32)
    runs = runs if side < 200 else max(runs // 4, 30)
    result = {"sizes": {name: sizes(tflite) for name, tflite in forms.items()}, "concurrent": {}}
    result["latency"] = latencies(forms, sample, runs, repeats)
    for name in ("float32", "int8"):
        for threads in (1, 2):
            result["concurrent"][name, threads] = concurrent_throughput(forms[name], threads, sample, 2, repeats)
    batch8 = np.repeat(sample, 8, axis=0)
    result["batch"] = {
        name: (per_sample_ms(forms[name], sample, runs, repeats), per_sample_ms(forms[name], batch8, runs, repeats))
        for name in ("float32", "int8")
    }
    return result


def ratio(numerator: list[float], denominator: list[float]) -> str:
    """Median of the per-repeat ratios (min–max): repeat i of one over repeat i of the other."""
    return spread([n / d for n, d in zip(numerator, denominator)]) + "x"


def report(results: dict[tuple[float, int], dict], repeats: int) -> tuple[str, str]:
    lines = [
        "| model | form | size (B) | gzip size (B) | p50 1 thread (ms) | p99 1 thread (ms) | p50 2 threads (ms) | "
        "2 threads vs 1 (p50) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    headline = []
    for (alpha, side), result in results.items():
        latencies = result["latency"]
        for name, (size, gzip_size) in result["sizes"].items():
            one, two = latencies[name, 1], latencies[name, 2]
            lines.append(
                f"| MobileNetV2 {alpha}/{side} | {name} | {size:,} | {gzip_size:,} | {spread(one['p50'], 3)} | "
                f"{spread(one['p99'], 3)} | {spread(two['p50'], 3)} | {ratio(one['p50'], two['p50'])} |"
            )
        int8_vs_float = ratio(latencies["int8", 1]["p50"], latencies["float32", 1]["p50"])
        int8_vs_float_2 = ratio(latencies["int8", 2]["p50"], latencies["float32", 2]["p50"])
        pruned = ratio(latencies["pruned int8", 1]["p50"], latencies["int8", 1]["p50"])
        clustered_ratio = ratio(latencies["clustered int8", 1]["p50"], latencies["int8", 1]["p50"])
        float_threads = ratio(latencies["float32", 1]["p50"], latencies["float32", 2]["p50"])
        concurrent = result["concurrent"]
        batch = result["batch"]
        headline.append(
            f"- **MobileNetV2 {alpha}/{side}**: int8 p50 is {int8_vs_float} float32's at 1 thread "
            f"({int8_vs_float_2} at 2); 2 threads make float32 {float_threads} faster than 1; pruned int8 runs at "
            f"{pruned} and clustered int8 at {clustered_ratio} dense int8's p50 (XNNPACK's sparse path is off on "
            f"x86 with AVX: smaller files, same speed). Two requests at once, each on its own interpreter: int8 "
            f"{spread(concurrent['int8', 1], 0)}/s on 1 thread each vs {spread(concurrent['int8', 2], 0)}/s on "
            f"2, float32 {spread(concurrent['float32', 1], 0)}/s vs {spread(concurrent['float32', 2], 0)}/s. "
            f"Per sample at batch 8 vs 1: float32 {spread(batch['float32'][1], 3)} vs "
            f"{spread(batch['float32'][0], 3)} ms, int8 {spread(batch['int8'][1], 3)} vs "
            f"{spread(batch['int8'][0], 3)} ms."
        )
    note = (
        f"Random-init weights (speed does not depend on their values); latencies are the median (min–max) of "
        f"{repeats} repeats, each a fresh process timing many single-sample calls after warm-up, the forms taking "
        "turns (a form's time moves between processes more than within one); ratios are medians of per-repeat "
        "ratios."
    )
    table = "\n".join(lines)
    return f"{table}\n\n" + "\n".join(headline) + f"\n\n{note}", "\n".join(headline) + f"\n\n{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each measurement (default 5)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per repeat at 96 px; a quarter at 224")
    # one repeat of `latencies`, in the fresh process it starts
    parser.add_argument("--time-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:
        print(*time_one(args.time_one, args.threads, np.load(args.sample), args.runs))
        return
    started = time.perf_counter()
    results = {(alpha, side): measure(alpha, side, args.runs, args.repeats) for alpha, side in SIZES}
    section, block = report(results, args.repeats)
    minutes = (time.perf_counter() - started) / 60
    write_section(
        "Model speed (LiteRT in process)",
        f"python bench/model_speed.py --repeats {args.repeats} --runs {args.runs}",
        f"{section}\n\n({minutes:.1f} minutes in all.)",
    )
    write_readme_block("model-speed", block)


if __name__ == "__main__":
    main()
