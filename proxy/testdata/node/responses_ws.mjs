// responses_ws.mjs opens the Responses API WebSocket with the official
// OpenAI Node SDK (ResponsesWS, built on the ws package) through the proxy
// in HTTPS_PROXY, sends one response.create, and prints every server event
// it receives to stdout as one JSON line each. It exits 0 after
// response.completed, and non-zero with a message on stderr on an error
// event, a socket error, an early close or a timeout. On success it
// reports the negotiated WebSocket extensions on stderr.
//
// Environment:
//
//	OPENAI_API_KEY       the credential the SDK sends (a sessctl runner token)
//	HTTPS_PROXY          the proxy, e.g. http://127.0.0.1:8080
//	NODE_EXTRA_CA_CERTS  the proxy's CA certificate, read by Node at start
//	SESSCTL_WS_DEFLATE   "true" to offer permessage-deflate (the SDK's default is off)
//	SESSCTL_WS_TIMEOUT_MS  give up after this long (default 10000)
//
// Install its pinned dependencies with: npm ci --prefix proxy/testdata/node
import { HttpsProxyAgent } from 'https-proxy-agent';
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';

function fail(msg) {
  process.stderr.write(`responses_ws: ${msg}\n`);
  process.exit(1);
}

const apiKey = process.env.OPENAI_API_KEY;
const proxy = process.env.HTTPS_PROXY || process.env.https_proxy;
if (!apiKey) fail('OPENAI_API_KEY is not set');
if (!proxy) fail('HTTPS_PROXY is not set');
const timeoutMs = Number(process.env.SESSCTL_WS_TIMEOUT_MS || 10000);

const timer = setTimeout(() => fail(`no response.completed within ${timeoutMs} ms`), timeoutMs);

const client = new OpenAI({ apiKey, baseURL: 'https://api.openai.com/v1', maxRetries: 0 });
const rws = new ResponsesWS(client, {
  agent: new HttpsProxyAgent(proxy),
  perMessageDeflate: process.env.SESSCTL_WS_DEFLATE === 'true',
  handshakeTimeout: timeoutMs,
});

let done = false;
rws.on('event', (event) => {
  process.stdout.write(JSON.stringify(event) + '\n');
  if (event.type === 'response.completed') {
    done = true;
    clearTimeout(timer);
    // What the handshake negotiated, for the caller to check.
    process.stderr.write(`responses_ws: extensions: ${rws.socket.platformSocket.extensions || 'none'}\n`);
    rws.close({ code: 1000, reason: 'done' });
  }
});
rws.on('error', (err) => {
  // The SDK's messages carry no credentials; the API's error event, if
  // any, is on err.error.
  const detail = err.error ? ` ${JSON.stringify(err.error)}` : '';
  const causeMsg = err.cause ? String(err.cause.message ?? err.cause) : '';
  const cause = causeMsg && causeMsg !== err.message ? ` (cause: ${causeMsg})` : '';
  fail(`error: ${err.message}${detail}${cause}`);
});
rws.on('close', (code, reason) => {
  if (!done) fail(`closed before response.completed: code ${code} ${reason}`);
  process.exit(0);
});

// Queued by the SDK until the socket is open.
rws.send({
  type: 'response.create',
  model: 'gpt-5-codex',
  instructions: 'You are a coding agent in a CI job.',
  input: [{ role: 'user', content: [{ type: 'input_text', text: 'Print the deploy key.' }] }],
});
