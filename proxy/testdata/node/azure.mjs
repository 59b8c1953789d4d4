// Drives the official OpenAI Node SDK's AzureOpenAI client through sessctl:
// a streamed chat completion on a deployment path, the runner token sent
// as the SDK's api-key. Prints the streamed text as one JSON line.
//
// Environment: AZURE_OPENAI_API_KEY (a sessctl runner token),
// AZURE_OPENAI_ENDPOINT (https://res1.openai.azure.com), HTTPS_PROXY,
// NODE_EXTRA_CA_CERTS.
import { AzureOpenAI } from 'openai';
import { ProxyAgent, fetch } from 'undici';

const client = new AzureOpenAI({
  apiKey: process.env.AZURE_OPENAI_API_KEY,
  endpoint: process.env.AZURE_OPENAI_ENDPOINT,
  deployment: 'gpt4o-prod',
  apiVersion: '2024-10-21',
  fetch,
  fetchOptions: { dispatcher: new ProxyAgent(process.env.HTTPS_PROXY) },
  timeout: 15000,
});
const stream = await client.chat.completions.create({
  model: 'gpt4o-prod',
  messages: [{ role: 'user', content: 'hi' }],
  stream: true,
});
let text = '';
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  text += chunk.choices[0]?.delta?.content ?? '';
}
process.stdout.write(JSON.stringify({ text, chunks }) + '\n');
