"""One chat completion with httpx (the transport of the openai Python SDK),
through the proxy in HTTPS_PROXY, trusting the CA in SSL_CERT_FILE: prints
the answer."""
import os
import sys

import httpx

with httpx.Client(timeout=30) as client:  # trust_env: HTTPS_PROXY, SSL_CERT_FILE
    r = client.post(
        "https://api.openai.com/v1/chat/completions",
        headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from httpx"}]},
    )
if r.status_code != 200:
    sys.exit(f"httpx_chat.py: {r.status_code} {r.text}")
print(r.json()["choices"][0]["message"]["content"])
