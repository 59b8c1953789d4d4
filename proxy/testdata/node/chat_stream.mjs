// chat_stream.mjs streams one chat completion with the official OpenAI
// Node SDK through the proxy in HTTPS_PROXY and prints every chunk the SDK
// yields to stdout as one JSON line each, exactly as the SDK parsed it.
//
// Environment:
//
//	OPENAI_API_KEY          the credential the SDK sends (a sessctl runner token)
//	HTTPS_PROXY             the proxy, e.g. http://127.0.0.1:8080
//	NODE_EXTRA_CA_CERTS     the proxy's CA certificate, read by Node at start
//	SESSCTL_INCLUDE_USAGE   "true" to set stream_options.include_usage
//
// Node's built-in fetch ignores HTTPS_PROXY, so the SDK is given a fetch
// over node:https with the pinned https-proxy-agent.
import https from 'node:https';
import { Readable } from 'node:stream';
import { HttpsProxyAgent } from 'https-proxy-agent';
import OpenAI from 'openai';

function fail(msg) {
  process.stderr.write(`chat_stream: ${msg}\n`);
  process.exit(1);
}

const apiKey = process.env.OPENAI_API_KEY;
const proxy = process.env.HTTPS_PROXY;
if (!apiKey) fail('OPENAI_API_KEY is not set');
if (!proxy) fail('HTTPS_PROXY is not set');
const agent = new HttpsProxyAgent(proxy);

// proxyFetch is the part of fetch the SDK uses, over the proxy agent.
function proxyFetch(url, init = {}) {
  return new Promise((resolve, reject) => {
    const headers = {};
    new Headers(init.headers).forEach((v, k) => { headers[k] = v; });
    const req = https.request(String(url), { method: init.method || 'GET', headers, agent }, (res) => {
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) v.forEach((x) => h.append(k, x));
        else if (v !== undefined) h.set(k, String(v));
      }
      resolve(new Response(Readable.toWeb(res), { status: res.statusCode, headers: h }));
    });
    req.on('error', reject);
    if (init.signal) init.signal.addEventListener('abort', () => req.destroy(new Error('aborted')));
    req.end(init.body ?? undefined);
  });
}

const client = new OpenAI({ apiKey, baseURL: 'https://api.openai.com/v1', maxRetries: 0, fetch: proxyFetch });
const params = {
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'say hello' }],
  stream: true,
};
if (process.env.SESSCTL_INCLUDE_USAGE === 'true') params.stream_options = { include_usage: true };
try {
  const stream = await client.chat.completions.create(params);
  for await (const chunk of stream) process.stdout.write(JSON.stringify(chunk) + '\n');
} catch (err) {
  fail(String(err && err.stack || err));
}
