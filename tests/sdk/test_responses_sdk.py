#!/usr/bin/env python3
"""End-to-end test of POST /v1/responses with the official clients that call it.

Usage: python tests/sdk/test_responses_sdk.py [BINARY] [unittest args...]

One channel per way the gateway serves the Responses API, all on the mock upstream:
- `native`: an OpenAI provider that speaks it (`responses = true`, the default for openai):
  the client's bytes go to the provider's /responses;
- `chat`: an OpenAI-compatible provider without it (`responses = false`): translated to chat
  completions;
- `anthropic`, `gemini`: translated to Messages and generateContent.
Each model is served by exactly one channel, so a model picks the path. Runs openai-python's
`responses.create` (text, streamed, function tools with a tool-output turn, json_schema through
`responses.parse`), the OpenAI Agents SDK running one tool-calling agent (tracing disabled: it
would call the internet) when it is installed, and the Vercel AI SDK's default OpenAI provider
(`generateText`/`streamText`, tests/sdk/node/responses.mjs) when NODE_MODULES names its install.
"""

import asyncio
import atexit
import json
import os
import subprocess
import sys
import time
import unittest

import openai
import pydantic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFAULT_BINARY, Stack, family_config  # noqa: E402

# name -> (provider kind, base path on the mock, model, channel id, extra provider TOML)
FAMILIES = {
    "native": ("openai", "/v1", "gpt-native", "oa-native", ""),
    "chat": ("openai", "/v1", "gpt-chat", "oa-chat", "responses = false\n"),
    "anthropic": ("anthropic", "/v1", "claude-mock", "an-1", ""),
    "gemini": ("gemini", "/v1beta", "gemini-mock", "ge-1", ""),
}

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool


STACK = None


class ResponsesApi:
    """openai-python's responses.* against one family (FAMILY set by the subclasses)."""

    FAMILY = None

    def setUp(self):
        _, _, self.model, self.channel, _ = FAMILIES[self.FAMILY]
        self.client = openai.OpenAI(
            base_url=f"{STACK.base_url}/v1", api_key="anything", max_retries=0, timeout=20
        )

    def tearDown(self):
        self.client.close()

    def test_text(self):
        raw = self.client.responses.with_raw_response.create(
            model=self.model, input="Say hello", instructions="Be brief."
        )
        self.assertEqual(raw.headers.get("x-router-channel"), self.channel)
        r = raw.parse()
        self.assertEqual(r.object, "response")
        self.assertEqual(r.status, "completed")
        self.assertTrue(r.id.startswith("resp_"), r.id)
        self.assertIn("Hello", r.output_text)
        self.assertEqual(r.output[-1].type, "message")
        self.assertEqual(r.output[-1].content[0].type, "output_text")
        self.assertGreater(r.usage.input_tokens, 0)
        self.assertGreater(r.usage.output_tokens, 0)
        self.assertEqual(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens)

    def test_stream(self):
        kinds, seqs, text = [], [], []
        with self.client.responses.stream(model=self.model, input="Say hello") as stream:
            for event in stream:
                kinds.append(event.type)
                seqs.append(event.sequence_number)
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
            final = stream.get_final_response()
        self.assertEqual(kinds[0], "response.created")
        self.assertEqual(kinds[1], "response.in_progress")
        self.assertEqual(kinds[-1], "response.completed")
        for k in (
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ):
            self.assertIn(k, kinds)
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs), "sequence numbers repeat")
        self.assertGreater(len(text), 1, "the text came in one piece")
        self.assertEqual("".join(text), final.output_text)
        self.assertEqual(final.status, "completed")
        self.assertGreater(final.usage.output_tokens, 0)

    def test_function_tool_round_trip(self):
        first = self.client.responses.create(
            model=self.model, input="Weather in Paris?", tools=[WEATHER]
        )
        calls = [o for o in first.output if o.type == "function_call"]
        self.assertEqual(len(calls), 1, first.output)
        call = calls[0]
        self.assertEqual(call.name, "get_weather")
        self.assertEqual(json.loads(call.arguments), {"location": "Paris"})
        self.assertTrue(call.call_id)
        # The tool's output goes back with the conversation (stateless: the whole input).
        second = self.client.responses.create(
            model=self.model,
            tools=[WEATHER],
            input=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
        )
        self.assertEqual(second.status, "completed")
        self.assertTrue(second.output_text)
        self.assertFalse([o for o in second.output if o.type == "function_call"])

    def test_function_tool_streamed(self):
        kinds, args = [], []
        with self.client.responses.stream(
            model=self.model, input="Weather in Paris?", tools=[WEATHER]
        ) as stream:
            for event in stream:
                kinds.append(event.type)
                if event.type == "response.function_call_arguments.delta":
                    args.append(event.delta)
            final = stream.get_final_response()
        self.assertIn("response.function_call_arguments.done", kinds)
        self.assertEqual(json.loads("".join(args)), {"location": "Paris"})
        call = [o for o in final.output if o.type == "function_call"][0]
        self.assertEqual(json.loads(call.arguments), {"location": "Paris"})

    def test_json_schema(self):
        r = self.client.responses.parse(model=self.model, input="A city?", text_format=City)
        self.assertIsInstance(r.output_parsed, City)
        self.assertEqual(r.output_parsed, City(name="mock", population=1, coastal=True))

    def test_stateless_limits_are_named(self):
        if self.FAMILY == "native":
            self.skipTest("a native channel keeps state itself")
        with self.assertRaises(openai.BadRequestError) as cm:
            self.client.responses.create(
                model=self.model, input="and then?", previous_response_id="resp_123"
            )
        self.assertEqual(cm.exception.code, "unsupported_parameter")
        self.assertIn("previous_response_id", str(cm.exception))

    def test_retrieve_is_not_found(self):
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve("resp_123")


class Native(ResponsesApi, unittest.TestCase):
    FAMILY = "native"


class TranslatedToChat(ResponsesApi, unittest.TestCase):
    FAMILY = "chat"


class TranslatedToAnthropic(ResponsesApi, unittest.TestCase):
    FAMILY = "anthropic"


class TranslatedToGemini(ResponsesApi, unittest.TestCase):
    FAMILY = "gemini"


class AgentsSdk(unittest.TestCase):
    """The OpenAI Agents SDK (Responses API by default) runs one tool-calling agent."""

    def test_tool_calling_agent(self):
        try:
            import agents
        except ImportError:
            self.skipTest("openai-agents is not installed")
        agents.set_tracing_disabled(True)
        called = []

        @agents.function_tool
        def get_weather(location: str) -> str:
            """Current weather for a location."""
            called.append(location)
            return f"sunny in {location}"

        async def run(model_id):
            client = openai.AsyncOpenAI(
                base_url=f"{STACK.base_url}/v1", api_key="anything", max_retries=0
            )
            try:
                model = agents.OpenAIResponsesModel(model=model_id, openai_client=client)
                agent = agents.Agent(
                    name="weather", instructions="Answer briefly.", tools=[get_weather], model=model
                )
                return await agents.Runner.run(agent, "Weather in Paris?")
            finally:
                await client.close()

        for family in ("native", "anthropic", "gemini"):
            with self.subTest(family=family):
                called.clear()
                result = asyncio.run(run(FAMILIES[family][2]))
                self.assertEqual(called, ["Paris"])
                self.assertTrue(result.final_output)


class VercelAiSdk(unittest.TestCase):
    """The Vercel AI SDK's default OpenAI provider calls /v1/responses."""

    def test_generate_and_stream_text(self):
        modules = os.environ.get("NODE_MODULES")
        if not modules:
            self.skipTest("NODE_MODULES is not set (tests/sdk/run.sh installs the AI SDK)")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "responses.mjs")
        env = dict(os.environ, NODE_PATH=modules, GATEWAY=f"{STACK.base_url}/v1")
        env["MODELS"] = ",".join(FAMILIES[f][2] for f in FAMILIES)
        p = subprocess.run(
            ["node", script], env=env, capture_output=True, text=True, timeout=120
        )
        print(p.stdout, file=sys.stderr, end="")
        self.assertEqual(p.returncode, 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")


def main():
    global STACK
    args = sys.argv[1:]
    binary = DEFAULT_BINARY
    if args and not args[0].startswith("-"):
        binary = args.pop(0)
    models = [m for _, _, m, _, _ in FAMILIES.values()]
    STACK = Stack(
        binary,
        models,
        lambda gw, mock, state: family_config(gw, mock, state, FAMILIES),
        prefix="sar-responses-sdk-",
    )
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
