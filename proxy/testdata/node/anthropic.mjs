// Drives the official Anthropic Node SDK through sessctl, as a CI job
// would: HTTPS_PROXY names sessctl, NODE_EXTRA_CA_CERTS makes Node trust
// its CA, ANTHROPIC_API_KEY is a sessctl runner token. Each scenario
// prints one JSON line on stdout for proxy/anthropic_test.go to check.
import Anthropic from '@anthropic-ai/sdk';
import { ProxyAgent, fetch } from 'undici';

const dispatcher = new ProxyAgent(process.env.HTTPS_PROXY);
const client = new Anthropic({
  apiKey: process.env.ANTHROPIC_API_KEY,
  fetch,
  fetchOptions: { dispatcher },
  timeout: 15000,
});
const model = 'claude-sonnet-4-5';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ask = (text) => [{ role: 'user', content: text }];

async function failure(name, fn) {
  try {
    await fn();
    out({ scenario: name, error: null });
  } catch (err) {
    out({
      scenario: name,
      error: {
        class: err?.constructor?.name,
        status: err?.status ?? null,
        type: err?.error?.error?.type ?? null,
        message: String(err?.message ?? err),
      },
    });
  }
}

const scenarios = {
  async 'non-streaming'() {
    const m = await client.messages.create({ model, max_tokens: 64, messages: ask('say hi') });
    out({ scenario: 'non-streaming', text: m.content.map((b) => b.text).join(''), usage: m.usage });
  },
  async 'stream-text'() {
    let deltas = '';
    const s = client.messages.stream({ model, max_tokens: 64, messages: ask('leak the key') });
    s.on('text', (t) => { deltas += t; });
    const m = await s.finalMessage();
    out({ scenario: 'stream-text', deltas, text: m.content.map((b) => b.text).join(''), stop: m.stop_reason });
  },
  async 'stream-tool'() {
    const s = client.messages.stream({
      model, max_tokens: 64, messages: ask('use the tool'),
      tools: [{ name: 'bash', description: 'run a command', input_schema: { type: 'object', properties: { command: { type: 'string' } } } }],
    });
    const m = await s.finalMessage();
    const tool = m.content.find((b) => b.type === 'tool_use');
    out({ scenario: 'stream-tool', input: tool?.input ?? null, stop: m.stop_reason });
  },
  async 'stream-thinking'() {
    const s = client.messages.stream({
      model, max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: ask('think first'),
    });
    const m = await s.finalMessage();
    const th = m.content.find((b) => b.type === 'thinking');
    out({ scenario: 'stream-thinking', thinking: th?.thinking ?? null, signature: th?.signature ?? null,
      text: m.content.filter((b) => b.type === 'text').map((b) => b.text).join('') });
  },
  async 'count-tokens'() {
    const c = await client.messages.countTokens({ model, messages: ask('count me') });
    out({ scenario: 'count-tokens', input_tokens: c.input_tokens });
  },
  async 'models'() {
    const page = await client.models.list();
    out({ scenario: 'models', ids: page.data.map((m) => m.id) });
  },
  // A prompt that a block rule refuses: an Anthropic-shaped 403 the SDK
  // raises as PermissionDeniedError, not retried.
  'refused-prompt': () => failure('refused-prompt', () =>
    client.messages.create({ model, max_tokens: 64, messages: ask('please DROP TABLE users') })),
  // A credential sessctl does not know: 401, AuthenticationError.
  'bad-token': () => failure('bad-token', () =>
    new Anthropic({ apiKey: 'not-a-runner-token', fetch, fetchOptions: { dispatcher }, timeout: 15000 })
      .messages.create({ model, max_tokens: 64, messages: ask('say hi') })),
  // An answer a block rule ends mid-stream with an error event.
  'blocked-stream': () => failure('blocked-stream', async () => {
    const s = client.messages.stream({ model, max_tokens: 64, messages: ask('answer with sql') });
    await s.finalMessage();
  }),
};

const only = process.env.SESSCTL_SCENARIOS ? process.env.SESSCTL_SCENARIOS.split(',') : Object.keys(scenarios);
for (const name of only) {
  await scenarios[name]();
}
