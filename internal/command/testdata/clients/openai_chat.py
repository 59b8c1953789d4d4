"""One chat completion with the openai Python SDK (OPENAI_API_KEY, and
HTTPS_PROXY and SSL_CERT_FILE through httpx): prints the answer."""
import openai

client = openai.OpenAI(max_retries=0)
r = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hello from the openai SDK"}],
)
print(r.choices[0].message.content)
