#!/usr/bin/env python3
"""End-to-end test: drive the smart-ai-router gateway with the official OpenAI Python SDK.

Usage: python tests/sdk/test_openai_sdk.py [BINARY] [unittest args...]

Starts `BINARY mock-upstream` and `BINARY --config FILE` (gateway in front of the mock) on free
loopback ports, runs the tests below against the gateway, and always stops both processes.
On failure, the tails of the gateway's and the mock's stderr are printed.
"""

import atexit
import json
import os
import sys
import time
import unittest
import urllib.error
import urllib.request

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFAULT_BINARY, Stack  # noqa: E402
MODELS = ["gpt-4o-mini", "gpt-4o"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def gateway_config(gw_port, mock_port, state_dir):
    """One OpenAI provider on the mock serving MODELS (discovery on: the mock lists them)."""
    return f"""[server]
listen = "127.0.0.1:{gw_port}"
workers = 2

[state]
dir = "{state_dir}"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-test"
models = ["gpt-4o-mini", "gpt-4o"]
"""


STACK = None


def base_url():
    return f"http://127.0.0.1:{STACK.gw_port}"


class GatewaySdkTest(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(
            base_url=f"{base_url()}/v1", api_key="anything", max_retries=0, timeout=10
        )

    def tearDown(self):
        self.client.close()

    # a. non-streaming chat completion ------------------------------------------------------

    def test_a_chat_completion(self):
        r = self.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say hello"}],
        )
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.model, "gpt-4o-mini")
        self.assertTrue(r.choices, "no choices")
        self.assertTrue(r.choices[0].message.content, "empty content")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertIsNotNone(r.usage)
        self.assertGreater(r.usage.total_tokens, 0)

    def test_a_chat_completion_headers(self):
        raw = self.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say hello"}],
        )
        self.assertEqual(raw.status_code, 200)
        h = raw.headers
        self.assertEqual(h.get("x-router-channel"), "up-1", dict(h))
        self.assertTrue(h.get("x-router-model"), dict(h))
        self.assertTrue(h.get("x-request-id"), dict(h))
        r = raw.parse()
        self.assertEqual(r.model, "gpt-4o-mini")
        self.assertTrue(r.choices[0].message.content)

    # b. streaming with usage ---------------------------------------------------------------

    def test_b_stream_with_usage(self):
        stream = self.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)  # the SDK stops at [DONE]; an error would raise here
        self.assertGreater(len(chunks), 2)
        for c in chunks:
            self.assertEqual(c.object, "chat.completion.chunk")
            self.assertEqual(c.model, "gpt-4o-mini")
        text = "".join(
            c.choices[0].delta.content or "" for c in chunks if c.choices
        )
        self.assertTrue(text.strip(), "empty streamed content")
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, ["stop"])
        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertIsNotNone(last.usage, "last chunk has no usage")
        self.assertGreater(last.usage.total_tokens, 0)
        for c in chunks[:-1]:
            self.assertIsNone(c.usage, f"usage on a non-final chunk: {c}")

    def test_b_stream_ends_with_done(self):
        # Same request, but read the raw SSE lines to check the [DONE] terminator itself.
        with self.client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as resp:
            self.assertEqual(resp.status_code, 200)
            self.assertTrue(resp.headers.get("content-type", "").startswith("text/event-stream"))
            self.assertEqual(resp.headers.get("x-router-channel"), "up-1")
            data = [l[len("data:"):].strip() for l in resp.iter_lines() if l.startswith("data:")]
        self.assertTrue(data, "no SSE data lines")
        self.assertEqual(data[-1], "[DONE]")
        self.assertEqual(data.count("[DONE]"), 1)
        for d in data[:-1]:
            json.loads(d)

    # c. models -----------------------------------------------------------------------------

    def test_c_models_list(self):
        ids = [m.id for m in self.client.models.list()]
        for m in MODELS:
            self.assertIn(m, ids)

    def test_c_models_retrieve(self):
        m = self.client.models.retrieve("gpt-4o")
        self.assertEqual(m.id, "gpt-4o")
        self.assertEqual(m.object, "model")

    # d. tool calls -------------------------------------------------------------------------

    def test_d_tool_call_round_trip(self):
        messages = [{"role": "user", "content": "What's the weather in Paris?"}]
        r = self.client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
        )
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        calls = choice.message.tool_calls
        self.assertTrue(calls, "no tool_calls")
        call = calls[0]
        self.assertEqual(call.type, "function")
        self.assertEqual(call.function.name, "get_weather")
        args = json.loads(call.function.arguments)
        self.assertIsInstance(args, dict)
        self.assertIn("location", args)
        self.assertTrue(call.id)

        # Second turn: hand the tool result back.
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
        r2 = self.client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]
        )
        self.assertEqual(r2.choices[0].finish_reason, "stop")
        self.assertTrue(r2.choices[0].message.content)
        self.assertFalse(r2.choices[0].message.tool_calls)

    def test_d_tool_call_stream(self):
        stream = self.client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
        calls = {}  # index -> {"id", "name", "arguments"}
        finish = None
        for c in stream:
            if not c.choices:
                continue
            ch = c.choices[0]
            for tc in ch.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    slot["id"] = tc.id
                if tc.function:
                    if tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finish = ch.finish_reason
        self.assertEqual(finish, "tool_calls")
        self.assertIn(0, calls)
        self.assertEqual(calls[0]["name"], "get_weather")
        self.assertTrue(calls[0]["id"])
        args = json.loads(calls[0]["arguments"])
        self.assertIn("location", args)

    # e. errors -----------------------------------------------------------------------------

    def test_e_unknown_model_404(self):
        with self.assertRaises(openai.NotFoundError) as cm:
            self.client.chat.completions.create(
                model="no-such-model",
                messages=[{"role": "user", "content": "hi"}],
            )
        self.assertEqual(cm.exception.status_code, 404)
        body = cm.exception.body
        self.assertIsInstance(body, dict, f"error body not an object: {body!r}")
        self.assertTrue(body.get("message"), body)

    def test_e_invalid_json_400(self):
        req = urllib.request.Request(
            f"{base_url()}/v1/chat/completions",
            data=b"{bad",
            method="POST",
            headers={"content-type": "application/json", "authorization": "Bearer anything"},
        )
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=10)
        err = cm.exception
        try:
            self.assertEqual(err.code, 400)
            self.assertTrue(err.headers.get("content-type", "").startswith("application/json"))
            body = json.loads(err.read())
        finally:
            err.close()
        self.assertIn("error", body)
        e = body["error"]
        self.assertTrue(e.get("message"), body)
        self.assertEqual(e.get("type"), "invalid_request_error", body)


def main():
    global STACK
    args = sys.argv[1:]
    binary = DEFAULT_BINARY
    if args and not args[0].startswith("-"):
        binary = args.pop(0)
    STACK = Stack(binary, MODELS, gateway_config, prefix="sar-sdk-")
    atexit.register(STACK.cleanup)
    print(f"openai SDK {openai.__version__}, binary {STACK.binary}", file=sys.stderr)
    t0 = time.monotonic()
    STACK.start()
    print(
        f"mock on :{STACK.mock_port}, gateway on :{STACK.gw_port} "
        f"(started in {time.monotonic() - t0:.2f}s)",
        file=sys.stderr,
    )
    prog = unittest.main(argv=[sys.argv[0]] + args, exit=False, verbosity=2)
    ok = prog.result.wasSuccessful()
    if not ok:
        print("\n" + STACK.report(), file=sys.stderr)
    STACK.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
