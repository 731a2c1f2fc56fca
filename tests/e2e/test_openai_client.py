"""End-to-end tests of `gossamer serve` driven by the official `openai` Python client.

Run by `crates/gossamer-cli/tests/serve_e2e.rs` (part of `cargo test`), which passes:
  GOSSAMER_BIN    the gossamer binary
  GOSSAMER_MODEL  a `tiny` random checkpoint folder
Each test class starts its own server on a free loopback port and stops it at the end.
The weights are random, so answers are gibberish: the tests check the API's behaviour
(shapes, streaming = non-streaming, tool calls, errors, cancellation, back-pressure),
not the words.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai

BIN = os.environ["GOSSAMER_BIN"]
MODEL_DIR = os.environ["GOSSAMER_MODEL"]
MODEL = "tiny-e2e"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Server:
    """A `gossamer serve` process on a free port."""

    def __init__(self, *extra):
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.log = []

    def start(self):
        # A restart keeps the port, so clients keep working.
        cmd = [BIN, "--threads", "1", "serve", "--model", MODEL_DIR, "--port", str(self.port or 0),
               "--served-model-name", MODEL, *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"on http://127\.0\.0\.1:(\d+)/v1", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60):
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key="none", **kw)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read().decode()

    def health(self):
        return json.loads(self.get("/health"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()


def user(text):
    return [{"role": "user", "content": text}]


class ChatCompletions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--context", "512").start()
        cls.client = cls.server.client(max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def create(self, **kw):
        args = dict(model=MODEL, messages=user("Say hello."), max_tokens=12, temperature=0)
        args.update(kw)
        return self.client.chat.completions.create(**args)

    def test_models_lists_the_served_model(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [MODEL])
        self.assertEqual(self.client.models.retrieve(MODEL).id, MODEL)

    def test_plain_answer_has_content_usage_and_finish_reason(self):
        r = self.create()
        self.assertEqual(r.object, "chat.completion")
        c = r.choices[0]
        self.assertEqual(c.message.role, "assistant")
        self.assertIsInstance(c.message.content, str)
        self.assertIn(c.finish_reason, ("length", "stop"))
        self.assertGreater(r.usage.prompt_tokens, 10)
        self.assertGreaterEqual(r.usage.completion_tokens, 1)
        self.assertLessEqual(r.usage.completion_tokens, 12)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_streaming_gives_the_same_answer_as_non_streaming(self):
        whole = self.create(seed=3)
        chunks = list(self.create(seed=3, stream=True, stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].message.content)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, [whole.choices[0].finish_reason])
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)

    def test_concurrent_greedy_requests_match_the_lone_answer(self):
        alone = self.create(max_tokens=16).choices[0].message.content
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: self.create(max_tokens=16).choices[0].message.content, range(6)))
        self.assertEqual(answers, [alone] * 6)

    def test_seeded_sampling_is_reproducible(self):
        a = self.create(temperature=1.0, seed=42).choices[0].message.content
        b = self.create(temperature=1.0, seed=42).choices[0].message.content
        self.assertEqual(a, b)

    def test_stop_string_cuts_the_content(self):
        text = self.create(max_tokens=24).choices[0].message.content
        words = text.split()
        self.assertGreater(len(words), 3, text)
        stop = words[2]
        before = text[: text.index(stop)]
        r = self.create(max_tokens=24, stop=[stop])
        self.assertEqual(r.choices[0].message.content, before)
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_logprobs(self):
        r = self.create(logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertGreaterEqual(len(content), 1)
        for t in content:
            self.assertLessEqual(t.logprob, 0.0)
            self.assertEqual(len(t.top_logprobs), 3)
            self.assertGreaterEqual(t.top_logprobs[0].logprob, t.top_logprobs[-1].logprob)

    def test_function_tool_round_trip(self):
        first = self.create(
            messages=user("Weather in Paris?"),
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=16,
        )
        msg = first.choices[0].message
        self.assertEqual(len(msg.tool_calls), 1)
        call = msg.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertTrue(call.id.startswith("call_"))
        self.assertIsInstance(call.function.arguments, str)
        # The client runs the tool and sends the result back.
        history = user("Weather in Paris?") + [
            {"role": "assistant", "content": msg.content, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})},
        ]
        follow = self.create(messages=history, tools=[WEATHER_TOOL], max_tokens=8)
        self.assertIsInstance(follow.choices[0].message.content, str)
        self.assertGreater(follow.usage.prompt_tokens, first.usage.prompt_tokens)

    def test_streamed_tool_call_matches_the_whole_one(self):
        args = dict(messages=user("Weather in Oslo?"), tools=[WEATHER_TOOL], tool_choice="required", max_tokens=16)
        whole = self.create(**args).choices[0].message.tool_calls[0]
        calls = {}
        for chunk in self.create(stream=True, **args):
            for d in chunk.choices[0].delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    entry["id"] = d.id
                if d.function and d.function.name:
                    entry["name"] = d.function.name
                if d.function and d.function.arguments:
                    entry["arguments"] += d.function.arguments
        self.assertEqual(list(calls), [0])
        self.assertEqual(calls[0]["name"], "get_weather")
        self.assertTrue(calls[0]["id"].startswith("call_"))
        self.assertEqual(calls[0]["arguments"], whole.function.arguments)

    # --- errors ---------------------------------------------------------------------------

    def raw_post(self, body, path="/v1/chat/completions"):
        req = urllib.request.Request(self.server.url + path, data=body, method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_malformed_json_is_a_400_in_openais_shape(self):
        status, body = self.raw_post(b'{"model": "tiny-e2e", "messages": [')
        self.assertEqual(status, 400)
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        self.assertEqual(body["error"]["type"], "invalid_request_error")

    def test_wrong_field_types_name_the_field(self):
        cases = [
            ({"temperature": "hot"}, "temperature"),
            ({"max_tokens": -3}, "max_tokens"),
            ({"messages": "hello"}, "messages"),
            ({"stream": "yes"}, "stream"),
            ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
             "tools.0.function.parameters"),
            ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name"),
        ]
        for extra, param in cases:
            with self.subTest(param=param):
                with self.assertRaises(openai.BadRequestError) as e:
                    self.create(**extra)
                self.assertEqual(e.exception.status_code, 400)
                self.assertEqual(e.exception.body["param"], param)

    def test_unknown_model_is_a_404(self):
        with self.assertRaises(openai.NotFoundError) as e:
            self.create(model="gpt-5")
        self.assertEqual(e.exception.body["code"], "model_not_found")

    def test_prompt_longer_than_the_context(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.create(messages=user("word " * 2000))
        self.assertEqual(e.exception.body["code"], "context_length_exceeded")

    def test_unsupported_parameters_are_refused_not_ignored(self):
        for extra in ({"n": 2}, {"response_format": {"type": "json_object"}}, {"presence_penalty": 0.5}):
            with self.subTest(extra=extra):
                with self.assertRaises(openai.BadRequestError) as e:
                    self.create(**extra)
                self.assertEqual(e.exception.body["code"], "unsupported_parameter")

    def test_a_client_that_disconnects_mid_stream_frees_its_slot(self):
        stream = self.create(max_tokens=400, stream=True, messages=user("Tell a long story."))
        seen = 0
        for _ in stream:
            seen += 1
            if seen == 3:
                break
        self.assertEqual(self.server.health()["active"], 1)
        stream.close()
        deadline = time.time() + 2
        while self.server.health()["active"] != 0:
            self.assertLess(time.time(), deadline, "slot still held after the client left")
            time.sleep(0.01)
        self.assertRegex(self.server.get("/metrics"), r"gossamer_requests_cancelled_total \d+")

    def test_a_client_that_gives_up_on_a_whole_answer_frees_its_slot(self):
        before = self.cancelled()
        impatient = self.server.client(max_retries=0, timeout=0.5)
        with self.assertRaises(openai.APITimeoutError):
            impatient.chat.completions.create(model=MODEL, messages=user("Tell a long story."), max_tokens=450)
        deadline = time.time() + 2
        while self.server.health()["active"] != 0:
            self.assertLess(time.time(), deadline, "slot still held after the client left")
            time.sleep(0.01)
        self.assertEqual(self.cancelled(), before + 1)

    def cancelled(self):
        m = re.search(r"gossamer_requests_cancelled_total (\d+)", self.server.get("/metrics"))
        return int(m.group(1)) if m else 0

    def test_metrics_page(self):
        self.create()
        page = self.server.get("/metrics")
        for name in ["gossamer_http_requests_total", "gossamer_queue_depth", "gossamer_active_sequences",
                     "gossamer_prompt_tokens_total", "gossamer_generated_tokens_total",
                     "gossamer_time_to_first_token_seconds", "gossamer_inter_token_latency_seconds",
                     "gossamer_batch_tokens"]:
            self.assertIn(name, page)


RESPONSES_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Responses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = os.path.join(os.environ.get("GOSSAMER_TMP") or tempfile.mkdtemp(), "responses.sqlite3")
        cls.server = Server("--context", "1024", "--responses-db", cls.db).start()
        cls.client = cls.server.client(max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def create(self, **kw):
        args = dict(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0)
        args.update(kw)
        return self.client.responses.create(**args)

    def test_plain_response(self):
        r = self.create(instructions="Be brief.", reasoning={"effort": "low"})
        self.assertTrue(r.id.startswith("resp_"))
        self.assertEqual(r.object, "response")
        self.assertIn(r.status, ("completed", "incomplete"))
        if r.status == "incomplete":
            self.assertEqual(r.incomplete_details.reason, "max_output_tokens")
        self.assertIsInstance(r.output_text, str)
        self.assertEqual(r.instructions, "Be brief.")
        self.assertEqual(r.reasoning.effort, "low")
        self.assertGreater(r.usage.input_tokens, 10)
        self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens)
        got = self.client.responses.retrieve(r.id)
        self.assertEqual(got.id, r.id)
        self.assertEqual(got.output_text, r.output_text)

    def test_streaming_events_add_up_to_the_final_response(self):
        whole = self.create()
        events = list(self.create(stream=True))
        types = [e.type for e in events]
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertIn(types[-1], ("response.completed", "response.incomplete"))
        self.assertEqual([e.sequence_number for e in events], list(range(len(events))))
        final = events[-1].response
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        self.assertEqual(deltas, final.output_text)
        self.assertEqual(final.output_text, whole.output_text)
        added = [e.item.id for e in events if e.type == "response.output_item.added"]
        self.assertEqual(added, [item.id for item in final.output])
        self.assertEqual(self.client.responses.retrieve(final.id).output_text, final.output_text)

    def test_function_call_round_trip_with_previous_response_id(self):
        first = self.create(input="Weather in Paris?", tools=[RESPONSES_TOOL],
                            tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=16)
        calls = [o for o in first.output if o.type == "function_call"]
        self.assertEqual(len(calls), 1)
        self.assertEqual(calls[0].name, "get_weather")
        follow = self.create(previous_response_id=first.id, tools=[RESPONSES_TOOL],
                             input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                     "output": json.dumps({"temp_c": 18})}])
        self.assertEqual(follow.previous_response_id, first.id)
        self.assertGreater(follow.usage.input_tokens, first.usage.input_tokens)

    def test_streamed_function_call_arguments(self):
        events = list(self.create(stream=True, input="Weather in Oslo?", tools=[RESPONSES_TOOL],
                                  tool_choice="required", max_output_tokens=16))
        final = events[-1].response
        call = [o for o in final.output if o.type == "function_call"][0]
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        self.assertEqual(deltas, call.arguments)

    def test_previous_response_id_survives_a_restart(self):
        first = self.create(input="Remember the number 7.")
        self.server.stop()
        self.server.start()
        follow = self.create(previous_response_id=first.id, input="Which number?")
        self.assertGreater(follow.usage.input_tokens, first.usage.input_tokens + first.usage.output_tokens)
        self.assertEqual(self.client.responses.retrieve(first.id).id, first.id)

    def test_store_false_is_not_kept_and_delete_works(self):
        r = self.create(store=False)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(r.id)
        kept = self.create()
        self.client.responses.delete(kept.id)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(kept.id)

    def test_errors(self):
        with self.assertRaises(openai.NotFoundError) as e:
            self.create(previous_response_id="resp_nope")
        self.assertEqual(e.exception.body["param"], "previous_response_id")
        with self.assertRaises(openai.BadRequestError) as e:
            self.create(input=[{"type": "function_call_output", "call_id": "call_x", "output": "1"}])
        self.assertEqual(e.exception.body["param"], "input.0.call_id")
        with self.assertRaises(openai.BadRequestError) as e:
            self.create(tools=[{"type": "web_search"}])
        self.assertEqual(e.exception.body["param"], "tools.0.type")
        with self.assertRaises(openai.BadRequestError) as e:
            self.create(temperature=5)
        self.assertEqual(e.exception.body["param"], "temperature")
        with self.assertRaises(openai.NotFoundError):
            self.create(model="gpt-5")
        with self.assertRaises(openai.BadRequestError) as e:
            self.create(input="word " * 3000)
        self.assertEqual(e.exception.body["code"], "context_length_exceeded")


class BackPressure(unittest.TestCase):
    def test_a_flood_beyond_the_queue_gets_429s_while_admitted_requests_complete(self):
        server = Server("--max-concurrency", "1", "--max-queue", "2").start()
        try:
            client = server.client(max_retries=0, timeout=120)

            def one(_):
                try:
                    r = client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=user("hi"), max_tokens=24, temperature=0)
                    return ("ok", r.parse().choices[0].finish_reason)
                except openai.RateLimitError as e:
                    return ("429", e.response.headers.get("retry-after"))

            with ThreadPoolExecutor(12) as pool:
                results = list(pool.map(one, range(12)))
            ok = [r for r in results if r[0] == "ok"]
            limited = [r for r in results if r[0] == "429"]
            self.assertGreaterEqual(len(ok), 3, results)
            self.assertGreaterEqual(len(limited), 1, results)
            self.assertTrue(all(r[1] == "length" for r in ok), results)
            self.assertTrue(all(r[1] is not None for r in limited), results)
            self.assertEqual(server.health()["waiting"], 0)
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
