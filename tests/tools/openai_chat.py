"""Asks a cocoon server a chat question with the official `openai` client.

Usage: openai_chat.py BASE_URL CERT_PEM MODEL SYSTEM QUESTION MAX_TOKENS

Prints one JSON object: the non-streamed answer, the streamed answer
(joined from its chunks), the chunk count, the usage of both, and the
models the server lists. Trust: the certificate file is the only trust
anchor; the hostname is not checked because a dev-booted guest is reached
through a forwarded loopback port (attestation, not names, is what a
production client checks).
"""
import json
import ssl
import sys

from openai import DefaultHttpxClient, OpenAI

base_url, cert, model, system, question, max_tokens = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cert)
ctx.check_hostname = False
client = OpenAI(base_url=base_url, api_key="unused", timeout=900, http_client=DefaultHttpxClient(verify=ctx))

models = [m.id for m in client.models.list()]
messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
plain = client.chat.completions.create(model=model, messages=messages, max_tokens=int(max_tokens), temperature=0)
chunks = list(
    client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=int(max_tokens),
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
usage = [c.usage for c in chunks if c.usage]
print(
    json.dumps(
        {
            "models": models,
            "text": plain.choices[0].message.content,
            "finish_reason": plain.choices[0].finish_reason,
            "usage": plain.usage.model_dump(),
            "streamed": streamed,
            "stream_chunks": len(chunks),
            "stream_finish": finish,
            "stream_usage": usage[-1].model_dump() if usage else None,
            "object": plain.object,
        }
    )
)
