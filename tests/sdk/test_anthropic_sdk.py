#!/usr/bin/env python3
"""End-to-end test: drive the gateway's Anthropic Messages ingress (`/v1/messages`) with the
official Anthropic Python SDK, against an upstream of every wire family.

Usage: python tests/sdk/test_anthropic_sdk.py [BINARY] [unittest args...]

Starts `BINARY mock-upstream` (which speaks OpenAI, Anthropic and Gemini natively) and
`BINARY --config FILE` with one provider per family on that mock, on free loopback ports; runs
the same Messages tests once per upstream family (plain, streamed, tool use and its round
trip, usage), then count_tokens and error mapping; always stops both processes. On failure,
the tails of the gateway's and the mock's stderr are printed.
"""

import atexit
import json
import os
import sys
import time
import unittest
import urllib.error
import urllib.request

import anthropic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFAULT_BINARY, Stack, family_config  # noqa: E402

# Upstream family -> (provider kind, base path on the mock, model, channel id). Each model is
# served by exactly one channel, so a model picks the family. Made-up model ids: the SDK warns
# about real ones once they are deprecated.
FAMILIES = {
    "openai": ("openai", "/v1", "gpt-mock", "oa-1"),
    "anthropic": ("anthropic", "/v1", "claude-mock", "an-1"),
    "gemini": ("gemini", "/v1beta", "gemini-mock", "ge-1"),
}

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


def gateway_config(gw_port, mock_port, state_dir):
    return family_config(gw_port, mock_port, state_dir, FAMILIES)


STACK = None


def new_client():
    # No retries: a retried error would hide which status the gateway sent first.
    return anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{STACK.gw_port}", api_key="x", max_retries=0, timeout=10
    )


def ask(text):
    return [{"role": "user", "content": text}]


class FamilyTests:
    """The Messages API through the gateway to one upstream family; mixed into one TestCase
    per family below, so a failure names the family."""

    FAMILY = None

    @property
    def model(self):
        return FAMILIES[self.FAMILY][2]

    @property
    def channel(self):
        return FAMILIES[self.FAMILY][3]

    def setUp(self):
        self.client = new_client()

    def tearDown(self):
        self.client.close()

    def assert_usage(self, usage):
        self.assertIsNotNone(usage)
        self.assertGreater(usage.input_tokens, 0, usage)
        self.assertGreater(usage.output_tokens, 0, usage)

    def assert_weather_call(self, message):
        """The answer is exactly one tool_use block calling get_weather with a dict input
        (the mock always asks for Paris); returns that block."""
        self.assertEqual(message.stop_reason, "tool_use", message)
        uses = [b for b in message.content if b.type == "tool_use"]
        self.assertEqual(len(uses), 1, message.content)
        use = uses[0]
        self.assertEqual(use.name, "get_weather")
        self.assertTrue(use.id, use)
        self.assertIsInstance(use.input, dict, use)
        self.assertEqual(use.input.get("location"), "Paris", use.input)
        return use

    def test_create(self):
        raw = self.client.messages.with_raw_response.create(
            model=self.model,
            max_tokens=256,
            system="Be brief.",
            messages=ask("Say hello"),
        )
        self.assertEqual(raw.status_code, 200)
        self.assertEqual(raw.headers.get("x-router-channel"), self.channel, dict(raw.headers))
        m = raw.parse()
        self.assertEqual(m.type, "message")
        self.assertEqual(m.role, "assistant")
        self.assertEqual(m.model, self.model)
        self.assertTrue(m.id, m)
        self.assertEqual([b.type for b in m.content], ["text"], m.content)
        self.assertTrue(m.content[0].text.strip(), "empty text")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assert_usage(m.usage)

    def test_create_tool_use_round_trip(self):
        messages = ask("What's the weather in Paris?")
        m = self.client.messages.create(
            model=self.model, max_tokens=256, messages=messages, tools=[WEATHER_TOOL]
        )
        use = self.assert_weather_call(m)
        self.assert_usage(m.usage)

        # Second turn: hand the tool result back; the answer is text.
        assistant = []
        for b in m.content:
            if b.type == "text":
                assistant.append({"type": "text", "text": b.text})
            elif b.type == "tool_use":
                assistant.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
        messages = messages + [
            {"role": "assistant", "content": assistant},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}
                ],
            },
        ]
        m2 = self.client.messages.create(
            model=self.model, max_tokens=256, messages=messages, tools=[WEATHER_TOOL]
        )
        self.assertEqual(m2.stop_reason, "end_turn", m2)
        self.assertEqual([b.type for b in m2.content], ["text"], m2.content)
        self.assertTrue(m2.content[0].text.strip())
        self.assert_usage(m2.usage)

    def test_stream_text(self):
        with self.client.messages.stream(
            model=self.model,
            max_tokens=256,
            system="Be brief.",
            messages=ask("Stream please"),
        ) as stream:
            self.assertEqual(stream.response.status_code, 200)
            self.assertTrue(
                stream.response.headers.get("content-type", "").startswith("text/event-stream"),
                dict(stream.response.headers),
            )
            self.assertEqual(stream.response.headers.get("x-router-channel"), self.channel)
            types = []
            pieces = []
            for ev in stream:
                types.append(ev.type)
                if ev.type == "text":
                    pieces.append(ev.text)
            final = stream.get_final_message()
        self.assertEqual(types[0], "message_start", types)
        self.assertEqual(types[-1], "message_stop", types)
        self.assertIn("message_delta", types)
        self.assertGreater(len(pieces), 1, f"text came in one piece: {types}")
        text = "".join(pieces)
        self.assertTrue(text.strip(), "empty streamed text")
        self.assertEqual(final.model, self.model)
        self.assertEqual([b.type for b in final.content], ["text"], final.content)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, "end_turn")
        self.assert_usage(final.usage)

    def test_stream_tool_use(self):
        with self.client.messages.stream(
            model=self.model,
            max_tokens=256,
            messages=ask("What's the weather in Paris?"),
            tools=[WEATHER_TOOL],
        ) as stream:
            partial = "".join(ev.partial_json for ev in stream if ev.type == "input_json")
            final = stream.get_final_message()
        use = self.assert_weather_call(final)
        self.assertEqual(json.loads(partial), use.input, partial)
        self.assert_usage(final.usage)

    def test_stream_raw_events(self):
        # The raw event sequence, as a client without the helpers sees it (stream=True).
        stream = self.client.messages.create(
            model=self.model, max_tokens=256, messages=ask("Hi"), stream=True
        )
        types = [ev.type for ev in stream]
        self.assertEqual(types[0], "message_start", types)
        self.assertEqual(types[-2:], ["message_delta", "message_stop"], types)
        self.assertIn("content_block_start", types)
        self.assertIn("content_block_delta", types)
        self.assertIn("content_block_stop", types)
        self.assertLess(types.index("content_block_start"), types.index("content_block_delta"))
        self.assertLess(types.index("content_block_stop"), types.index("message_delta"))

    def test_upstream_error_is_anthropic_shaped(self):
        # The mock answers this request with a 400 in its own family's shape; the client must
        # get an Anthropic-shaped 400 whatever the upstream spoke.
        with self.assertRaises(anthropic.BadRequestError) as cm:
            self.client.messages.create(
                model=self.model,
                max_tokens=64,
                messages=ask("hi"),
                extra_headers={"x-mock-status": "400"},
            )
        self.assertEqual(cm.exception.status_code, 400)
        body = cm.exception.body
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body.get("type"), "error", body)
        self.assertEqual(body["error"].get("type"), "invalid_request_error", body)
        self.assertTrue(body["error"].get("message"), body)


class OpenAIUpstreamTest(FamilyTests, unittest.TestCase):
    FAMILY = "openai"


class AnthropicUpstreamTest(FamilyTests, unittest.TestCase):
    FAMILY = "anthropic"


class GeminiUpstreamTest(FamilyTests, unittest.TestCase):
    FAMILY = "gemini"


class CountTokensTest(unittest.TestCase):
    def setUp(self):
        self.client = new_client()
        self.model = FAMILIES["anthropic"][2]

    def tearDown(self):
        self.client.close()

    def count(self, messages, **kw):
        return self.client.messages.count_tokens(model=self.model, messages=messages, **kw)

    def test_count_tokens(self):
        short = self.count(ask("Hello"))
        self.assertGreater(short.input_tokens, 0, short)
        long = self.count(ask("Hello " * 400))
        self.assertGreater(long.input_tokens, short.input_tokens)
        with_system = self.count(ask("Hello"), system="You are a meteorologist. " * 20)
        self.assertGreater(with_system.input_tokens, short.input_tokens)
        with_tools = self.count(ask("Hello"), tools=[WEATHER_TOOL])
        self.assertGreater(with_tools.input_tokens, short.input_tokens)

    def test_count_tokens_of_any_family_model(self):
        # Counting is the gateway's own estimate, so models of non-Anthropic families count too.
        for fam, (_, _, model, _) in FAMILIES.items():
            n = self.client.messages.count_tokens(model=model, messages=ask("Hello there"))
            self.assertGreater(n.input_tokens, 0, fam)


class ErrorTest(unittest.TestCase):
    def setUp(self):
        self.client = new_client()

    def tearDown(self):
        self.client.close()

    def assert_error_body(self, exc, status, error_type):
        self.assertEqual(exc.status_code, status)
        body = exc.body
        self.assertIsInstance(body, dict, f"error body not an object: {body!r}")
        self.assertEqual(body.get("type"), "error", body)
        self.assertIsInstance(body.get("error"), dict, body)
        self.assertEqual(body["error"].get("type"), error_type, body)
        self.assertTrue(body["error"].get("message"), body)

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(anthropic.NotFoundError) as cm:
            self.client.messages.create(model="no-such-model", max_tokens=16, messages=ask("hi"))
        self.assert_error_body(cm.exception, 404, "not_found_error")

    def test_unknown_model_stream_is_not_found(self):
        with self.assertRaises(anthropic.NotFoundError) as cm:
            with self.client.messages.stream(
                model="no-such-model", max_tokens=16, messages=ask("hi")
            ) as stream:
                stream.get_final_message()
        self.assert_error_body(cm.exception, 404, "not_found_error")

    def test_empty_messages_is_bad_request(self):
        with self.assertRaises(anthropic.BadRequestError) as cm:
            self.client.messages.create(model=FAMILIES["anthropic"][2], max_tokens=16, messages=[])
        self.assert_error_body(cm.exception, 400, "invalid_request_error")

    def test_invalid_json_is_bad_request(self):
        # Below the SDK (which cannot send broken JSON): the raw error shape and content type.
        req = urllib.request.Request(
            f"http://127.0.0.1:{STACK.gw_port}/v1/messages",
            data=b"{bad",
            method="POST",
            headers={
                "content-type": "application/json",
                "x-api-key": "x",
                "anthropic-version": "2023-06-01",
            },
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
        self.assertEqual(body.get("type"), "error", body)
        self.assertEqual(body["error"].get("type"), "invalid_request_error", body)
        self.assertTrue(body["error"].get("message"), body)

    def test_system_role_in_messages_is_bad_request(self):
        # Anthropic has no system role inside `messages` (system text is a top-level field).
        with self.assertRaises(anthropic.BadRequestError) as cm:
            self.client.messages.create(
                model=FAMILIES["openai"][2],
                max_tokens=16,
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                ],
            )
        self.assert_error_body(cm.exception, 400, "invalid_request_error")


def main():
    global STACK
    args = sys.argv[1:]
    binary = DEFAULT_BINARY
    if args and not args[0].startswith("-"):
        binary = args.pop(0)
    models = [m for _, _, m, _ in FAMILIES.values()]
    STACK = Stack(binary, models, gateway_config, prefix="sar-anthropic-sdk-")
    atexit.register(STACK.cleanup)
    print(f"anthropic SDK {anthropic.__version__}, binary {STACK.binary}", file=sys.stderr)
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
