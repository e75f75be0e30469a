"""Signs and verifies Stripe webhook payloads with Stripe's own Python library.

Reads JSON lines from stdin and writes one JSON line for each:
  {"sign": PAYLOAD, "secret": S, "timestamp": T}  ->  {"header": "t=...,v1=..."}
  {"verify": PAYLOAD, "header": H, "secret": S}   ->  {"valid": true|false, "error": "..."}
"""
import json
import sys

import stripe

for line in sys.stdin:
    request = json.loads(line)
    if "sign" in request:
        header = stripe.WebhookSignature.generate_signature_header(
            request["sign"], request["secret"], request["timestamp"]
        )
        answer = {"header": header}
    else:
        try:
            stripe.WebhookSignature.verify_header(
                request["verify"], request["header"], request["secret"], tolerance=300
            )
            answer = {"valid": True}
        except stripe.SignatureVerificationError as e:
            answer = {"valid": False, "error": str(e)}
    print(json.dumps(answer), flush=True)
