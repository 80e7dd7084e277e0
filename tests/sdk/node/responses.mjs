// The Vercel AI SDK's default OpenAI provider — `createOpenAI({ baseURL })(model)` calls
// POST /v1/responses — against the gateway: generateText, streamText and a tool-calling
// generateText, for every model in MODELS (one per way the gateway serves the API).
// Env: GATEWAY (base URL ending in /v1), MODELS (comma-separated), NODE_PATH (the install).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

// ESM ignores NODE_PATH: resolve the SDK from the install the runner names.
const require = createRequire(path.join(process.env.NODE_PATH, "noop.js"));
const { generateText, streamText, tool, stepCountIs } = require("ai");
const { createOpenAI } = require("@ai-sdk/openai");
const { z } = require("zod");

const provider = createOpenAI({ baseURL: process.env.GATEWAY, apiKey: "anything" });
const weather = tool({
  description: "Current weather for a location",
  inputSchema: z.object({ location: z.string() }),
  execute: async ({ location }) => `sunny in ${location}`,
});

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}

for (const id of process.env.MODELS.split(",")) {
  const model = provider(id);
  await check(`${id} generateText`, async () => {
    const r = await generateText({ model, prompt: "Say hello", maxRetries: 0 });
    assert.match(r.text, /Hello/);
    assert.equal(r.finishReason, "stop");
    assert.ok(r.usage.inputTokens > 0, JSON.stringify(r.usage));
    assert.ok(r.usage.outputTokens > 0, JSON.stringify(r.usage));
  });
  await check(`${id} streamText`, async () => {
    const r = streamText({ model, prompt: "Say hello", maxRetries: 0 });
    const parts = [];
    for await (const piece of r.textStream) parts.push(piece);
    assert.ok(parts.length > 1, "the text came in one piece");
    assert.match(parts.join(""), /Hello/);
    assert.equal(await r.finishReason, "stop");
    assert.ok((await r.usage).outputTokens > 0);
  });
  await check(`${id} tool call`, async () => {
    const r = await generateText({
      model,
      prompt: "Weather in Paris?",
      tools: { get_weather: weather },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    const calls = r.steps.flatMap((s) => s.toolCalls);
    assert.equal(calls.length, 1, JSON.stringify(r.steps.map((s) => s.content)));
    assert.deepEqual(calls[0].input, { location: "Paris" });
    assert.ok(r.text.length > 0, "no final text after the tool result");
  });
}
process.exit(failures ? 1 : 0);
