"""Signs webhook payloads as Zendesk and Intercom document their schemes, with Python's hmac
(neither ships a library that signs).

Reads JSON lines from stdin and writes one JSON line for each:
  {"zendesk": PAYLOAD, "secret": S, "timestamp": T}  ->  {"signature": base64(HMAC-SHA256(S, T + PAYLOAD))}
  {"intercom": PAYLOAD, "secret": S}                 ->  {"signature": "sha1=" + hex(HMAC-SHA1(S, PAYLOAD))}
"""
import base64
import hashlib
import hmac
import json
import sys

for line in sys.stdin:
    request = json.loads(line)
    secret = request["secret"].encode()
    if "zendesk" in request:
        signed = (request["timestamp"] + request["zendesk"]).encode()
        signature = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    else:
        signature = "sha1=" + hmac.new(secret, request["intercom"].encode(), hashlib.sha1).hexdigest()
    print(json.dumps({"signature": signature}), flush=True)
