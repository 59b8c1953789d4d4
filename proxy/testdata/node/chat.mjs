// chat.mjs sends one chat completion with the official OpenAI Node SDK and
// prints the answer's text. It reads only the environment a runner gets
// from sessctl's first-run lines:
//
//	OPENAI_API_KEY       the credential the SDK sends (a sessctl runner token)
//	HTTPS_PROXY          the proxy, read by undici's EnvHttpProxyAgent (Node's
//	                     own fetch ignores it before Node 24 / NODE_USE_ENV_PROXY=1)
//	NODE_EXTRA_CA_CERTS  the proxy's CA certificate, read by Node at start
//
// Install its pinned dependencies with: npm ci --prefix proxy/testdata/node
import OpenAI from 'openai';
import { EnvHttpProxyAgent, fetch } from 'undici';

const client = new OpenAI({ fetch, fetchOptions: { dispatcher: new EnvHttpProxyAgent() }, maxRetries: 0 });
try {
  const r = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hello from node' }],
  });
  process.stdout.write(r.choices[0].message.content + '\n');
} catch (err) {
  const cause = err.cause ? ` (cause: ${err.cause.message ?? err.cause})` : '';
  process.stderr.write(`chat.mjs: ${err.status ?? ''} ${err.message}${cause}\n`);
  process.exit(1);
}
