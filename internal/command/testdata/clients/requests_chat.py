"""One chat completion with Python requests, through the proxy in
HTTPS_PROXY, trusting the CA in REQUESTS_CA_BUNDLE: prints the answer."""
import os
import sys

import requests

r = requests.post(
    "https://api.openai.com/v1/chat/completions",
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from requests"}]},
    timeout=30,
)
if r.status_code != 200:
    sys.exit(f"requests_chat.py: {r.status_code} {r.text}")
print(r.json()["choices"][0]["message"]["content"])
