"""Labeling under load: 16 scripted labelers vote through the studio's named endpoints at once.

Starts ``python app.py --tabs label`` on loopback with a fresh data dir holding a synthetic pool (no model
is loaded), runs N concurrent ``gradio_client`` labelers for a bounded time (each: ``next_pair`` then
``vote``, in a loop), stops the server, and checks the vote log against what the server acknowledged.
Prints a table and writes ``bench/results/labeling.json``. On a 2-core CPU it takes about two minutes::

    python bench/labeling.py --labelers 16 --duration 20

``--campaign`` runs only the campaign-sized run instead (64 labelers thinking about 3 s each, for 60 s, through
the HTTP queue protocol as 64 browsers would; about a minute and a half) and stores it under ``campaign`` in the
results file, beside the other runs: ``campaign.lost_votes``, ``campaign.duplicated_votes`` and
``campaign.vote.p95_ms`` (target <= 250 ms on 2 cores)::

    python bench/labeling.py --campaign

Three runs by default, each labeler pausing a random 0-2 s before each vote (``--think 1``: a fast human):
through ``gradio_client`` (the measure asked for; it polls its event stream every 50 ms, so its latencies
include the client library's own waiting; ``ssl_verify=False`` on this plain-http loopback URL, else it
loads the CA bundle on every request, ~50 ms of CPU per call); through Gradio's
HTTP queue protocol directly with one kept-alive connection per labeler, as a browser talks to the app,
which isolates the server; and that again with no pause, for the throughput ceiling (where latency is
queueing by construction: 16 closed-loop labelers keep the server saturated).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from huvidpo.annotation import CandidatePool, VoteStore
from huvidpo.data.video import write_video

REPO_ROOT = Path(__file__).resolve().parent.parent

TARGET_P95_MS = 150.0
CAMPAIGN = {"labelers": 64, "duration": 60.0, "think": 3.0}
CAMPAIGN_TARGET_P95_MS = 250.0
CHOICES = ("left", "left", "right", "right", "tie", "both_bad", "skip")


def build_pool(data_dir: Path, prompts: int, clips_per_prompt: int) -> int:
    """A pool of small synthetic clips: ``prompts`` prompts with ``clips_per_prompt`` clips each; returns its pairs."""
    pool = CandidatePool(data_dir / "pool")
    rng = np.random.default_rng(0)
    scratch = data_dir / "scratch"
    for prompt_index in range(prompts):
        prompt = f"a shape number {prompt_index} moving on a plain background"
        for clip_index in range(clips_per_prompt):
            frames = np.broadcast_to(rng.random((1, 1, 1, 3), dtype=np.float32), (8, 32, 32, 3))
            video = write_video(frames, scratch / f"{prompt_index}-{clip_index}.mp4")
            pool.add_clip(prompt, video, {"model": "bench", "seed": clip_index})
    return prompts * clips_per_prompt * (clips_per_prompt - 1) // 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen, float]:
    """``python app.py`` serving only the Label tab; returns the process and its start-up time."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--tabs", "label"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    while not any("serving at" in line for line in lines):
        if process.poll() is not None or time.monotonic() - started > 120:
            process.kill()
            raise RuntimeError("app.py did not start:\n" + "".join(lines))
        time.sleep(0.1)
    return process, time.monotonic() - started


def label_until(timed, name: str, rng: random.Random, think_s: float, deadline: float, acknowledged: list, errors: list) -> None:
    """The labeler's loop: next_pair, think, vote, until the time is up or the pool is judged; errors are results."""
    try:
        time.sleep(rng.uniform(0, 2 * think_s))  # labelers arrive spread out, not in the same millisecond
        pair = timed("next_pair", name)
        while not pair["done"] and time.time() < deadline:
            time.sleep(rng.uniform(0, 2 * think_s))
            after = timed("vote", name, pair["token"], rng.choice(CHOICES))
            acknowledged.append({**after["last_vote"], "labeler": name})
            pair = after
    except Exception as err:  # noqa: BLE001 - a failed call is a result of the benchmark
        errors.append(f"{type(err).__name__}: {err}")


def run_labeler(index: int, url: str, duration: float, think_s: float, gate, results) -> None:
    """One scripted labeler (its own process): next_pair, vote, repeat, until the time is up or nothing is left."""
    from gradio_client import Client

    name = f"bench-labeler-{index:02d}"
    rng = random.Random(index)
    latencies: dict[str, list[float]] = {"next_pair": [], "vote": []}
    acknowledged: list[dict] = []
    errors: list[str] = []

    def timed(endpoint: str, *args):
        started = time.perf_counter()
        result = client.predict(*args, api_name=f"/{endpoint}")
        latencies[endpoint].append((time.perf_counter() - started) * 1000)
        return result[0]

    # ssl_verify=False: plain http on loopback; otherwise gradio_client loads the CA bundle on every request.
    client = Client(url, verbose=False, download_files=False, ssl_verify=False)
    gate.wait()
    try:
        label_until(timed, name, rng, think_s, time.time() + duration, acknowledged, errors)
    finally:
        client.close()
        results.put({"latencies": latencies, "acknowledged": acknowledged, "errors": errors})


def run_http_labeler(index: int, url: str, duration: float, think_s: float, gate, results, fn_ids: dict) -> None:
    """The same labeler speaking Gradio's HTTP queue protocol directly, with one kept-alive connection, as a
    browser does: join the queue, read the event stream until the call completes. Isolates the server's latency."""
    import uuid

    import httpx

    name = f"bench-labeler-{index:02d}"
    rng = random.Random(index)
    session = uuid.uuid4().hex
    latencies: dict[str, list[float]] = {"next_pair": [], "vote": []}
    acknowledged: list[dict] = []
    errors: list[str] = []
    http = httpx.Client(base_url=url, timeout=60)

    def timed(endpoint: str, *args):
        started = time.perf_counter()
        joined = http.post("gradio_api/queue/join", json={
            "data": [*args, None], "fn_index": fn_ids[endpoint], "session_hash": session, "event_data": None, "trigger_id": None,
        })
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    latencies[endpoint].append((time.perf_counter() - started) * 1000)
                    if not message.get("success", False):
                        raise RuntimeError(message.get("output", {}).get("error") or "call failed")
                    return message["output"]["data"][0]
        raise RuntimeError(f"the event stream of {endpoint} ended without a result")

    gate.wait()
    try:
        label_until(timed, name, rng, think_s, time.time() + duration, acknowledged, errors)
    finally:
        http.close()
        results.put({"latencies": latencies, "acknowledged": acknowledged, "errors": errors})


def endpoint_ids(url: str) -> dict[str, int]:
    import httpx

    config = httpx.get(f"{url}config", timeout=30).json()
    return {dep["api_name"]: dep["id"] for dep in config["dependencies"] if dep.get("api_name") in ("next_pair", "vote")}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summarize(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(values), 1) if values else None,
        "p95_ms": round(percentile(values, 95), 1) if values else None,
        "p99_ms": round(percentile(values, 99), 1) if values else None,
        "max_ms": round(max(values), 1) if values else None,
    }


def check_votes(store: VoteStore, acknowledged: list[dict]) -> dict:
    """Acknowledged votes missing from the log (lost), vote ids or judgements written twice (duplicated)."""
    records = store.read()
    written = Counter(record.vote_id for record in records)
    lost = [vote["vote_id"] for vote in acknowledged if written[vote["vote_id"]] == 0]
    duplicated_ids = sum(count - 1 for count in written.values() if count > 1)
    judged = Counter((vote.labeler, vote.pair_id) for vote in store.effective_votes() if vote.choice.value != "skip")
    duplicated_judgements = sum(count - 1 for count in judged.values() if count > 1)
    acknowledged_ids = {vote["vote_id"] for vote in acknowledged}
    return {
        "acknowledged": len(acknowledged),
        "written": len(records),
        "lost": len(lost),
        "duplicated": duplicated_ids + duplicated_judgements,
        "written_not_acknowledged": sum(1 for record in records if record.vote_id not in acknowledged_ids),
        "torn_lines": store.skipped_lines,
    }


def run_once(args: argparse.Namespace, client: str, think_s: float) -> dict:
    """One bench run on a fresh data dir and server; ``client`` is 'gradio_client' or 'http'."""
    with tempfile.TemporaryDirectory(prefix="huvidpo-bench-labeling-") as tmp:
        data_dir = Path(tmp) / "data"
        pairs = build_pool(data_dir, args.prompts, args.clips_per_prompt)
        port = free_port()
        process, startup_s = start_server(data_dir, port)
        try:
            url = f"http://127.0.0.1:{port}/"
            # One process per labeler: 16 gradio_clients in one process would measure the GIL instead of the
            # app. fork: no re-imports.
            context = multiprocessing.get_context("fork")
            gate, queue = context.Barrier(args.labelers + 1), context.Queue()
            if client == "http":
                target, extra = run_http_labeler, (endpoint_ids(url),)
            else:
                target, extra = run_labeler, ()
            workers = [
                context.Process(target=target, args=(index, url, args.duration, think_s, gate, queue, *extra), daemon=True)
                for index in range(args.labelers)
            ]
            for worker in workers:
                worker.start()
            server = psutil.Process(process.pid)
            gate.wait()
            server_cpu_before = sum(server.cpu_times()[:2])
            started = time.time()
            outcomes = [queue.get(timeout=args.duration + 180) for _ in workers]
            elapsed = time.time() - started
            server_cpu = sum(server.cpu_times()[:2]) - server_cpu_before
            for worker in workers:
                worker.join(30)
        finally:
            process.terminate()
            process.wait(timeout=30)
        acknowledged = [vote for outcome in outcomes for vote in outcome["acknowledged"]]
        integrity = check_votes(VoteStore(data_dir / "votes.jsonl"), acknowledged)

    next_pair = summarize([ms for outcome in outcomes for ms in outcome["latencies"]["next_pair"]])
    vote = summarize([ms for outcome in outcomes for ms in outcome["latencies"]["vote"]])
    errors = [error for outcome in outcomes for error in outcome["errors"]]
    return {
        "client": client,
        "labelers": args.labelers,
        "duration_s": round(elapsed, 2),
        "think_s": think_s,
        "pool_pairs": pairs,
        "server_startup_s": round(startup_s, 2),
        "votes": len(acknowledged),
        "votes_per_s": round(len(acknowledged) / elapsed, 2),
        "next_pair": next_pair,
        "vote": vote,
        "lost_votes": integrity["lost"],
        "duplicated_votes": integrity["duplicated"],
        "integrity": integrity,
        "errors": errors[:20],
        "error_count": len(errors),
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": all(r["p95_ms"] is not None and r["p95_ms"] <= TARGET_P95_MS for r in (next_pair, vote)),
        "server_cpu_ms_per_call": round(1000 * server_cpu / max(1, next_pair["count"] + vote["count"]), 1),
        "server_cpu_share": round(server_cpu / elapsed, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def print_table(runs: list[dict]) -> None:
    print(f"{'client':<14} {'think s':>7} {'endpoint':<10} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'votes/s':>8} {'lost':>5} {'dup':>5}")
    for run in runs:
        for name in ("next_pair", "vote"):
            row = run[name]
            cells = [row[key] if row[key] is not None else float("nan") for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            tail = f"{run['votes_per_s']:>8.1f} {run['lost_votes']:>5} {run['duplicated_votes']:>5}" if name == "vote" else ""
            print(f"{run['client']:<14} {run['think_s']:>7.1f} {name:<10} {row['count']:>6} " + " ".join(f"{cell:>8.1f}" for cell in cells) + " " + tail)
    for run in runs:
        print(f"{run['client']} (think {run['think_s']:g} s): {run['labelers']} labelers for {run['duration_s']:.0f} s, {run['votes']} votes, "
              f"{run['error_count']} errors, server {run['server_cpu_ms_per_call']:.0f} ms CPU per call "
              f"({run['server_cpu_share']:.0%} of a core), load average {run['load_avg_1m']}, "
              f"p95 target {TARGET_P95_MS:.0f} ms {'met' if run['meets_target'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelers", type=int, default=16, help="Concurrent scripted labelers.")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of labeling per run (bounded).")
    parser.add_argument("--think", type=float, default=1.0,
                        help="Mean pause before each vote in seconds, uniform in [0, 2*think] (a fast human needs ~1-3 s).")
    parser.add_argument("--clients", default="gradio_client,http",
                        help="Runs to make: gradio_client (the required measure) and/or http (the raw protocol, as browsers).")
    parser.add_argument("--no-max", action="store_true", help="Skip the last run: http labelers with no pause (the throughput ceiling).")
    parser.add_argument("--prompts", type=int, default=12, help="Prompts in the synthetic pool.")
    parser.add_argument("--clips-per-prompt", type=int, default=5, help="Clips per prompt (pairs = n(n-1)/2 per prompt).")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "labeling.json"), help="Where to write the results.")
    parser.add_argument("--campaign", action="store_true",
                        help="Only the campaign run (64 labelers, think 3 s, 60 s, http), stored under 'campaign' in --out.")
    args = parser.parse_args(argv)
    if args.campaign:
        return run_campaign(args)
    kinds = [kind.strip() for kind in args.clients.split(",") if kind.strip()]
    if not kinds or set(kinds) - {"gradio_client", "http"}:
        parser.error("--clients takes gradio_client and/or http")

    plan = [(kind, args.think) for kind in kinds] + ([] if args.no_max else [("http", 0.0)])
    runs = [run_once(args, kind, think) for kind, think in plan]
    main_run = runs[0]
    results = {
        **main_run,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "note": (
            "Latencies are round trips per call. gradio_client polls its event stream every 50 ms, so its numbers "
            "include the client library's own waiting; the http runs speak the same queue protocol with one "
            "kept-alive connection per labeler, as a browser does. next_pair is called once per labeler (each vote "
            "returns the next pair). Labelers pause uniform(0, 2*think_s) before each call; the think 0 run is the "
            "throughput ceiling, where 16 closed-loop labelers keep the server saturated."
        ),
    }
    out = Path(args.out)
    if out.is_file() and "campaign" in json.loads(out.read_text(encoding="utf-8")):  # kept until --campaign reruns it
        results["campaign"] = json.loads(out.read_text(encoding="utf-8"))["campaign"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(runs)
    print(f"wrote {out}")
    return 0 if all(run["lost_votes"] == 0 and run["duplicated_votes"] == 0 and not run["error_count"] for run in runs) else 1


def run_campaign(args: argparse.Namespace) -> int:
    """The campaign-sized run: ``CAMPAIGN`` labelers through the HTTP queue protocol; written under 'campaign'."""
    args.labelers, args.duration, think = CAMPAIGN["labelers"], CAMPAIGN["duration"], CAMPAIGN["think"]
    run = run_once(args, "http", think)
    run["target_p95_ms"] = CAMPAIGN_TARGET_P95_MS
    run["meets_target"] = (run["vote"]["p95_ms"] is not None and run["vote"]["p95_ms"] <= CAMPAIGN_TARGET_P95_MS
                           and run["lost_votes"] == 0 and run["duplicated_votes"] == 0)
    run["measured_at"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    out = Path(args.out)
    results = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    results["campaign"] = run
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table([run])
    print(f"campaign: {run['labelers']} labelers, {run['votes']} votes, lost {run['lost_votes']}, duplicated "
          f"{run['duplicated_votes']}, vote p95 {run['vote']['p95_ms']} ms (target {CAMPAIGN_TARGET_P95_MS:.0f} ms: "
          f"{'met' if run['meets_target'] else 'NOT met'})")
    print(f"wrote {out}")
    return 0 if run["lost_votes"] == 0 and run["duplicated_votes"] == 0 and not run["error_count"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
