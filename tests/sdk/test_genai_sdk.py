#!/usr/bin/env python3
"""End-to-end test: drive the gateway's Gemini ingress with Google's google-genai Python SDK,
with its DEFAULT settings (recent releases default to api_version `v1`: `POST
/v1/models/{m}:generateContent`, `GET /v1/models`; older ones such as 1.40 to `v1beta`),
against an upstream of every wire family; one test also sets each api_version explicitly.

Usage: python tests/sdk/test_genai_sdk.py [BINARY] [unittest args...]

Starts `BINARY mock-upstream` (which speaks OpenAI, Anthropic and Gemini natively, and OpenAI
embeddings) and `BINARY --config FILE` with one provider per family on that mock, behind a
client key, on free loopback ports; runs generate_content, generate_content_stream,
count_tokens and models.get once per upstream family, then embed_content (an OpenAI-family
embedding channel: the only family with embeddings), models.list and error mapping; always
stops both processes. On failure, the tails of the gateway's and the mock's stderr are printed.
"""

import atexit
import hashlib
import os
import sys
import time
import unittest

from google import genai
from google.genai import errors, types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFAULT_BINARY, Stack  # noqa: E402

API_KEY = "sk-genai-test"

# Upstream family -> (provider kind, base path on the mock, model, channel id). Each model is
# served by exactly one channel, so a model picks the family.
FAMILIES = {
    "openai": ("openai", "/v1", "gpt-mock", "oa-1"),
    "anthropic": ("anthropic", "/v1", "claude-mock", "an-1"),
    "gemini": ("gemini", "/v1beta", "gemini-mock", "ge-1"),
}
# Served by the OpenAI-family channel too (an id with `embed` is an embedding model).
EMBEDDING_MODEL = "text-embedding-mock"


def gateway_config(gw_port, mock_port, state_dir):
    """One provider and one channel per family, all on the mock, and one client key; no
    discovery or probes, so each channel serves exactly its configured models."""
    parts = [
        f'[server]\nlisten = "127.0.0.1:{gw_port}"\nworkers = 2\n',
        "[discovery]\nenabled = false\n",
        "[health]\nenabled = false\n",
        f'[state]\ndir = "{state_dir}"\n',
        f'[[auth.keys]]\nname = "genai"\n'
        f'sha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"\n',
    ]
    for name, (kind, path, model, channel) in FAMILIES.items():
        models = [model] + ([EMBEDDING_MODEL] if name == "openai" else [])
        listed = ", ".join(f'"{m}"' for m in models)
        parts.append(
            f'[providers.{name}]\nkind = "{kind}"\n'
            f'base_url = "http://127.0.0.1:{mock_port}{path}"\n'
        )
        parts.append(
            f'[[channels]]\nid = "{channel}"\nprovider = "{name}"\n'
            f'api_key = "key-{name}"\nmodels = [{listed}]\n'
        )
    return "\n".join(parts)




STACK = None


def new_client(api_key=API_KEY):
    # Default settings but the base URL: api_version stays the SDK's default (v1).
    return genai.Client(
        api_key=api_key,
        http_options={"base_url": f"http://127.0.0.1:{STACK.gw_port}", "timeout": 10_000},
    )


def new_client_for_version():
    """A client with no base URL, only to read the SDK's default api_version."""
    return genai.Client(api_key=API_KEY)


class FamilyTests:
    """google-genai through the gateway to one upstream family; mixed into one TestCase per
    family below, so a failure names the family."""

    FAMILY = None

    @property
    def model(self):
        return FAMILIES[self.FAMILY][2]

    def setUp(self):
        self.client = new_client()

    def test_generate_content(self):
        r = self.client.models.generate_content(
            model=self.model,
            contents="Say hello.",
            config=types.GenerateContentConfig(
                system_instruction="Be brief.", max_output_tokens=64
            ),
        )
        self.assertTrue(r.text, r)
        self.assertEqual(r.candidates[0].finish_reason, types.FinishReason.STOP, r)
        self.assertGreater(r.usage_metadata.prompt_token_count, 0, r)
        self.assertGreater(r.usage_metadata.candidates_token_count, 0, r)

    def test_generate_content_stream(self):
        chunks = list(
            self.client.models.generate_content_stream(model=self.model, contents="Say hello.")
        )
        self.assertGreaterEqual(len(chunks), 2, chunks)
        text = "".join(c.text or "" for c in chunks)
        self.assertTrue(text, chunks)
        self.assertEqual(chunks[-1].candidates[0].finish_reason, types.FinishReason.STOP)
        self.assertGreater(chunks[-1].usage_metadata.candidates_token_count, 0, chunks[-1])

    def test_count_tokens(self):
        short = self.client.models.count_tokens(model=self.model, contents="Hello")
        long = self.client.models.count_tokens(model=self.model, contents="Hello " * 400)
        self.assertGreater(short.total_tokens, 0, short)
        self.assertGreater(long.total_tokens, short.total_tokens + 300, long)

    def test_models_get(self):
        m = self.client.models.get(model=self.model)
        self.assertEqual(m.name, f"models/{self.model}", m)
        self.assertEqual(m.display_name, self.model, m)
        self.assertIn("generateContent", m.supported_actions, m)
        self.assertIn("countTokens", m.supported_actions, m)

    def test_embed_content_needs_an_embedding_model(self):
        # A chat model never serves embeddings: a 404 the SDK reads as Gemini's error.
        with self.assertRaises(errors.ClientError) as cm:
            self.client.models.embed_content(model=self.model, contents="hello")
        self.assertEqual(cm.exception.code, 404, cm.exception)
        self.assertEqual(cm.exception.status, "NOT_FOUND", cm.exception)


class OpenAIFamily(FamilyTests, unittest.TestCase):
    FAMILY = "openai"


class AnthropicFamily(FamilyTests, unittest.TestCase):
    FAMILY = "anthropic"


class GeminiFamily(FamilyTests, unittest.TestCase):
    FAMILY = "gemini"


class GatewayTests(unittest.TestCase):
    """What does not depend on the upstream family: embeddings, the model list, errors."""

    def setUp(self):
        self.client = new_client()

    def test_both_api_versions(self):
        # The suite runs on the SDK's default api_version (v1 in recent releases, v1beta in
        # older ones such as 1.40); both prefixes are served, so each is checked here too.
        for version in ("v1", "v1beta"):
            client = genai.Client(
                api_key=API_KEY,
                http_options={
                    "base_url": f"http://127.0.0.1:{STACK.gw_port}",
                    "api_version": version,
                    "timeout": 10_000,
                },
            )
            with self.subTest(version=version):
                r = client.models.generate_content(model="gemini-mock", contents="hi")
                self.assertTrue(r.text, r)
                n = client.models.count_tokens(model="claude-mock", contents="hi")
                self.assertGreater(n.total_tokens, 0, n)
                r = client.models.embed_content(model=EMBEDDING_MODEL, contents="hi")
                self.assertEqual(len(r.embeddings), 1, r)
                names = {m.name for m in client.models.list()}
                self.assertIn("models/gpt-mock", names)

    def test_embed_content(self):
        r = self.client.models.embed_content(model=EMBEDDING_MODEL, contents="hello")
        self.assertEqual(len(r.embeddings), 1, r)
        self.assertEqual(len(r.embeddings[0].values), 8, r)
        r = self.client.models.embed_content(
            model=EMBEDDING_MODEL,
            contents=["first", "second", "third"],
            config=types.EmbedContentConfig(output_dimensionality=4),
        )
        self.assertEqual(len(r.embeddings), 3, r)
        self.assertTrue(all(len(e.values) == 4 for e in r.embeddings), r)
        self.assertNotEqual(r.embeddings[0].values, r.embeddings[1].values)

    def test_models_list(self):
        names = {m.name for m in self.client.models.list()}
        want = {f"models/{m}" for _, _, m, _ in FAMILIES.values()} | {
            f"models/{EMBEDDING_MODEL}"
        }
        self.assertEqual(names, want)
        embedder = self.client.models.get(model=EMBEDDING_MODEL)
        self.assertIn("embedContent", embedder.supported_actions, embedder)

    def test_unknown_model_is_not_found(self):
        for call in (
            lambda: self.client.models.generate_content(model="no-such-model", contents="hi"),
            lambda: self.client.models.get(model="no-such-model"),
        ):
            with self.assertRaises(errors.ClientError) as cm:
                call()
            self.assertEqual(cm.exception.code, 404, cm.exception)
            self.assertEqual(cm.exception.status, "NOT_FOUND", cm.exception)
            self.assertTrue(cm.exception.message, cm.exception)

    def test_wrong_key_is_unauthenticated(self):
        client = new_client(api_key="sk-wrong")
        for call in (
            lambda: client.models.generate_content(model="gpt-mock", contents="hi"),
            lambda: client.models.count_tokens(model="gpt-mock", contents="hi"),
            lambda: list(client.models.list()),
        ):
            with self.assertRaises(errors.ClientError) as cm:
                call()
            self.assertEqual(cm.exception.code, 401, cm.exception)
            self.assertEqual(cm.exception.status, "UNAUTHENTICATED", cm.exception)

    def test_bad_request_is_invalid_argument(self):
        with self.assertRaises(errors.ClientError) as cm:
            self.client.models.generate_content(
                model="gpt-mock",
                contents=types.Content(
                    role="user",
                    parts=[types.Part(inline_data=types.Blob(mime_type="video/mp4", data=b"x"))],
                ),
            )
        self.assertEqual(cm.exception.code, 400, cm.exception)
        self.assertEqual(cm.exception.status, "INVALID_ARGUMENT", cm.exception)


def main():
    global STACK
    args = sys.argv[1:]
    binary = DEFAULT_BINARY
    if args and not args[0].startswith("-"):
        binary = args.pop(0)
    models = [m for _, _, m, _ in FAMILIES.values()] + [EMBEDDING_MODEL]
    STACK = Stack(binary, models, gateway_config, prefix="sar-genai-sdk-")
    atexit.register(STACK.cleanup)
    default = getattr(getattr(new_client_for_version(), "_api_client", None), "_http_options", None)
    print(
        f"google-genai SDK {genai.__version__} (default api_version "
        f"{getattr(default, 'api_version', '?')}), binary {STACK.binary}",
        file=sys.stderr,
    )
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
