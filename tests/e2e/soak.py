"""Soak test of `gossamer serve`: mixed requests for a while, memory watched.

    .venv-e2e/bin/python tests/e2e/soak.py --bin target/release/gossamer --model DIR \
        [--minutes 10] [--workers 8] [--context 2048]

Starts the server, keeps `--workers` clients busy with a mix of requests (plain and
streaming chat, forced tool calls and their round trip, Responses plain / streaming /
previous_response_id, clients that leave mid-stream, over-long prompts, bad JSON), samples
the server's resident memory every second, and prints one JSON line: requests by outcome,
peak RSS (VmHWM), RSS at the end of the first and of the last minute. Memory is bounded when
the last minute's RSS is not above the first's by more than noise. Exits 1 on any 5xx or
unexpected error.
"""

import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("GOSSAMER_BIN", "")
os.environ.setdefault("GOSSAMER_MODEL", "")

import openai  # noqa: E402


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--context", type=int, default=2048)
    a = ap.parse_args()
    os.environ["GOSSAMER_BIN"] = a.bin
    os.environ["GOSSAMER_MODEL"] = a.model
    import test_openai_client as t  # the Server helper

    server = t.Server("--context", str(a.context), "--max-queue", "16").start()
    client = server.client(max_retries=0, timeout=300)
    tools = [t.WEATHER_TOOL]
    counts = {}
    lock = threading.Lock()
    stop_at = time.time() + a.minutes * 60
    failures = []

    def note(k):
        with lock:
            counts[k] = counts.get(k, 0) + 1

    def chat(**kw):
        args = dict(model=t.MODEL, messages=t.user("Tell me something."), max_tokens=random.randint(8, 96))
        args.update(kw)
        return client.chat.completions.create(**args)

    def one(rng):
        kind = rng.choice(["plain", "stream", "tool", "responses", "responses_stream", "follow_up",
                           "disconnect", "too_long", "bad_json"])
        try:
            if kind == "plain":
                chat()
            elif kind == "stream":
                for _ in chat(stream=True, stream_options={"include_usage": True}):
                    pass
            elif kind == "tool":
                m = chat(tools=tools, tool_choice="required", max_tokens=24).choices[0].message
                call = m.tool_calls[0]
                chat(messages=t.user("Weather?") + [
                    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": "18 C"}])
            elif kind == "responses":
                client.responses.create(model=t.MODEL, input="hi", max_output_tokens=rng.randint(8, 64))
            elif kind == "responses_stream":
                for _ in client.responses.create(model=t.MODEL, input="hi", max_output_tokens=32, stream=True):
                    pass
            elif kind == "follow_up":
                r = client.responses.create(model=t.MODEL, input="hi", max_output_tokens=16)
                client.responses.create(model=t.MODEL, input="more", previous_response_id=r.id,
                                        max_output_tokens=16)
            elif kind == "disconnect":
                s = chat(stream=True, max_tokens=500)
                for i, _ in enumerate(s):
                    if i == 3:
                        break
                s.close()
            elif kind == "too_long":
                try:
                    chat(messages=t.user("word " * (a.context * 2)))
                    raise AssertionError("an over-long prompt was accepted")
                except openai.BadRequestError:
                    pass
            elif kind == "bad_json":
                try:
                    client.post("/chat/completions", body="{", cast_to=object)
                except (openai.BadRequestError, openai.UnprocessableEntityError):
                    pass
            note(kind)
        except openai.RateLimitError:
            note("429")
        except Exception as e:  # noqa: BLE001 — any other failure fails the soak
            note("error")
            failures.append(f"{kind}: {e!r}")

    def worker(i):
        rng = random.Random(i)
        while time.time() < stop_at:
            one(rng)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.workers)]
    for th in threads:
        th.start()
    samples = []
    start = time.time()
    while any(th.is_alive() for th in threads):
        samples.append((time.time() - start, rss_kib(server.proc.pid, "VmRSS")))
        time.sleep(1)
    peak = rss_kib(server.proc.pid, "VmHWM")
    server.stop()
    first = [r for s, r in samples if s <= 60]
    last = [r for s, r in samples if s >= samples[-1][0] - 60]
    report = {
        "minutes": a.minutes, "workers": a.workers, "requests": counts,
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_first_minute_max_mib": round(max(first) / 1024, 1) if first else None,
        "rss_last_minute_max_mib": round(max(last) / 1024, 1) if last else None,
        "failures": failures[:20],
    }
    print(json.dumps(report))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
