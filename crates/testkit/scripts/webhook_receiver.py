"""A webhook receiver for the outbox's tests that checks signatures with the reference
Standard Webhooks library (PyPI `standardwebhooks`), over HTTPS with a certificate for
127.0.0.1 from a CA made by trustme (written as PEM to --ca-out).

Answers 204 to a POST whose signature the library accepts, 401 with its error otherwise,
and records each request (headers, body, verdict) as a JSON line in --record.
Prints one JSON line, {"port": N}, once it listens; runs until killed.

With --sign it instead prints the library's signature of stdin's JSON
{"id", "timestamp", "body"} and exits.
"""

import argparse
import datetime
import http.server
import json
import ssl
import sys

import trustme
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--secret", required=True)
    p.add_argument("--sign", action="store_true")
    p.add_argument("--record")
    p.add_argument("--ca-out")
    args = p.parse_args()
    webhook = Webhook(args.secret)

    if args.sign:
        request = json.load(sys.stdin)
        stamp = datetime.datetime.fromtimestamp(request["timestamp"], tz=datetime.timezone.utc)
        print(webhook.sign(request["id"], stamp, request["body"]))
        return

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verdict, status = "valid", 204
            except WebhookVerificationError as e:
                verdict, status = f"invalid: {e}", 401
            with open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": self.path, "headers": headers,
                                    "body": body.decode("utf-8"), "verdict": verdict}) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    ca = trustme.CA()
    ca.cert_pem.write_to_path(args.ca_out)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
