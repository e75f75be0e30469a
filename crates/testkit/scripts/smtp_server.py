"""A real SMTP server for the outbox's email tests (aiosmtpd).

Records every message it accepts, envelope and raw data and the message as Python's own
email parser reads it, as one JSON line in --record. Serves plain SMTP, STARTTLS or
implicit TLS with a certificate for 127.0.0.1 from a CA made by trustme (written as PEM to
--ca-out), optionally requires AUTH, and refuses the recipients it is told to.

Prints one JSON line, {"port": N}, once it listens; runs until killed.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import ssl
import warnings

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--record", required=True, help="JSON lines file of accepted messages")
    p.add_argument("--security", choices=["none", "starttls", "tls"], default="none")
    p.add_argument("--ca-out", help="where to write the test CA's certificate (PEM)")
    p.add_argument("--auth", help="user:password required before MAIL")
    p.add_argument("--mechanisms", default="PLAIN,LOGIN", help="AUTH mechanisms offered")
    p.add_argument("--refuse-rcpt", action="append", default=[], metavar="ADDRESS=REPLY",
                   help="answer RCPT TO for ADDRESS with REPLY, e.g. 'gone@example.com=550 5.1.1 no such user'")
    p.add_argument("--refuse-data", action="append", default=[], metavar="ADDRESS=REPLY",
                   help="answer the end of DATA with REPLY when ADDRESS is a recipient")
    p.add_argument("--stall-data", action="append", default=[], metavar="ADDRESS",
                   help="never answer the end of DATA when ADDRESS is a recipient (record it, though)")
    return p.parse_args()


def refusals(items):
    return dict(item.split("=", 1) for item in items)


def parts(message):
    """The decoded text and HTML bodies and every defect the parser found."""
    text = html = None
    defects = [type(d).__name__ for d in message.defects]
    for part in message.walk():
        defects += [type(d).__name__ for d in part.defects]
        if part.is_multipart():
            continue
        if part.get_content_type() == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and html is None:
            html = part.get_content()
    return text, html, defects


class Recorder:
    def __init__(self, path, refuse_rcpt, refuse_data, stall_data):
        self.path = path
        self.stall_data = set(stall_data)
        self.refuse_rcpt = refuse_rcpt
        self.refuse_data = refuse_data
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.refuse_data:
                return self.refuse_data[rcpt]
        raw = envelope.original_content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text, html, defects = parts(message)
        transport = server.transport
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "helo": session.host_name,
            "tls": session.ssl is not None
            or (transport is not None and transport.get_extra_info("ssl_object") is not None),
            "auth_login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "auth_mechanism": getattr(session, "steward_mechanism", None),
            "raw": raw.decode("ascii", errors="replace"),
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "content_type": message.get_content_type(),
            "text": text,
            "html": html,
            "defects": defects,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.count += 1
        if self.stall_data.intersection(envelope.rcpt_tos):
            # The message arrived; the answer never does (the crash window, seen from the client).
            await asyncio.sleep(3600)
        return f"250 OK queued as test-{self.count}"


def main():
    args = parse_args()
    # AUTH without TLS is allowed on purpose (the plain mode's tests); no warnings about it.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    context = None
    if args.security != "none":
        ca = trustme.CA()
        ca.cert_pem.write_to_path(args.ca_out)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    authenticator = None
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            if ok:
                session.steward_mechanism = mechanism
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    offered = set(args.mechanisms.split(","))
    recorder = Recorder(args.record, refusals(args.refuse_rcpt), refusals(args.refuse_data), args.stall_data)

    def factory():
        return SMTP(
            recorder,
            hostname="steward-test-relay",
            tls_context=context if args.security == "starttls" else None,
            require_starttls=args.security == "starttls",
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_require_tls=False,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in offered],
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, host="127.0.0.1", port=0, ssl=context if args.security == "tls" else None)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
