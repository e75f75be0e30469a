"""Sends identify/group/track/page messages through the real segment-analytics-python SDK.

Usage: send.py HOST WRITE_KEY PREFIX USERS TRACKS_PER_USER
Prints one JSON line per message sent: {"messageId": ..., "account": ...}.
"""
import json
import sys

from segment.analytics import Client

host, write_key, prefix, users, tracks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
errors = []
client = Client(write_key, host=host, gzip=True, max_retries=10, upload_size=200, on_error=lambda e, batch: errors.append(str(e)))
sent = []
for i in range(users):
    user, account = f"{prefix}-user-{i}", f"{prefix}-acct-{i % 25}"

    def mid(kind):
        m = f"{prefix}-{i}-{kind}"
        sent.append({"messageId": m, "account": account})
        return m

    client.identify(user, {"email": f"user{i}@{account}.test", "name": f"User {i}"}, message_id=mid("identify"))
    client.group(user, account, {"name": f"Account {i % 25}", "plan": "team"}, message_id=mid("group"))
    for j in range(tracks):
        client.track(user, "Report Created", {"n": j}, message_id=mid(f"track{j}"))
    client.page(user, None, "Dashboard", {"path": "/dashboard"}, message_id=mid("page"))
client.flush()
client.join()
client.shutdown()
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
for s in sent:
    print(json.dumps(s))
