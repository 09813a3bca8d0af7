"""Explanations beside predictions: /predict's throughput at concurrency 4 alone, and while 8 clients flood
/explain, on one rtdeploy server with the default explain_concurrency (1) and explain_queue (16) and the digits
model. (With no queue, the 7 clients beyond the one slot got instant 503s, retried at once and spun the event
loop: /predict kept a third of its throughput. Waiting their turn, they cost it a fifth.)

Each repeat measures /predict alone, then again while a second wrk keeps 8 connections posting /explain (one
digit as JSON) from a second before until after it. Reported: the flooded throughput as a share of the one
alone (median over repeats of each repeat's ratio, with min–max), the /predict requests that were not answered
200 (the target: none, and at least half the throughput kept), and what the flood got: explanations answered
per second and the share refused with 503. Writes bench/RESULTS.md and README's block `explain-load`.

    python bench/explain_load.py [--seconds 8] [--repeats 3]
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import loadtest  # noqa: E402
from results import spread, write_readme_block, write_section  # noqa: E402
from steps.release.infra import free_port  # noqa: E402

PREDICT_CLIENTS = 4
EXPLAIN_CLIENTS = 8
TARGET_SHARE = 0.5  # of /predict's throughput kept under the flood


def png_of(sample: list, folder: str) -> Path:
    """The digit as an 8-bit grayscale PNG: /predict's input."""
    pixels = (np.asarray(sample, np.float32)[0, ..., 0] * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path = Path(folder) / "digit.png"
    path.write_bytes(buffer.getvalue())
    return path


def flood(port: int, script: Path, seconds: float) -> subprocess.Popen:
    """wrk keeping EXPLAIN_CLIENTS connections on /explain for `seconds` (read with `finish`)."""
    command = ["wrk", "-t2", f"-c{EXPLAIN_CLIENTS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}/explain"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=120)
    line = next(line for line in output.splitlines() if line.startswith("JSON "))
    return json.loads(line[5:])


def main() -> None:
    parser = loadtest.argument_parser(__doc__)
    args = loadtest.parse(parser)
    with loadtest.trained() as setup:
        predict_script = loadtest.wrk_script(png_of(setup.sample, setup.folder), {"Content-Type": "image/png"})
        port = free_port()
        server = loadtest.start(loadtest.Server("rtdeploy", loadtest.SERVE), setup.env, port, setup.folder)
        try:
            loadtest.run_wrk(port, predict_script, 16, loadtest.WARMUP_SECONDS, "/predict")  # untimed warm-up
            alone, flooded, floods = [], [], []
            for repeat in range(args.repeats):
                alone.append(loadtest.run_wrk(port, predict_script, PREDICT_CLIENTS, args.seconds, "/predict"))
                explaining = flood(port, setup.script, args.seconds + 2)
                time.sleep(1)
                flooded.append(loadtest.run_wrk(port, predict_script, PREDICT_CLIENTS, args.seconds, "/predict"))
                floods.append(finish(explaining))
                print(
                    f"bench: repeat {repeat + 1}: /predict {alone[-1]['throughput']:,.0f}/s alone, "
                    f"{flooded[-1]['throughput']:,.0f}/s under the flood",
                    flush=True,
                )
        finally:
            loadtest.stop(server)
    ratios = [f["throughput"] / a["throughput"] for a, f in zip(alone, flooded)]
    refused = sum(run["errors"] for run in flooded)
    answered = [(run["requests"] - run["errors"]) / run["seconds"] for run in floods]
    refused_share = [run["errors"] / max(run["requests"], 1) for run in floods]
    body = "\n".join(
        [
            f"One rtdeploy server (the defaults: explain_concurrency 1, explain_queue 16), the digits model; /predict "
            f"with a PNG at "
            f"concurrency {PREDICT_CLIENTS}, alone and while {EXPLAIN_CLIENTS} connections flood /explain; median "
            f"(min–max) over {args.repeats} repeats of {args.seconds:g} s.",
            "",
            "| | value |",
            "|---|---:|",
            f"| /predict alone, requests/s | {spread([a['throughput'] for a in alone], 0)} |",
            f"| /predict under the flood, requests/s | {spread([f['throughput'] for f in flooded], 0)} |",
            f"| kept under the flood (target at least {TARGET_SHARE:.0%}) | {spread(ratios)}x |",
            f"| /predict answers other than 200 under the flood (target: none) | {refused} |",
            f"| /predict p99 alone / under the flood, ms | {statistics.median(a['p99'] for a in alone):.2f} / "
            f"{statistics.median(f['p99'] for f in flooded):.2f} |",
            f"| explanations answered, per second | {spread(answered, 1)} |",
            "| flood requests refused with 503 (beyond explain_concurrency + explain_queue) | "
            f"{spread(refused_share)} |",
        ]
    )
    write_section("Explanations under load (digits)", loadtest.reproduce(__file__, args), body)
    write_readme_block("explain-load", body)
    print(body)


if __name__ == "__main__":
    main()
