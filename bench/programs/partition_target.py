"""The forward sink's target for bench/partition.sh: records every request it gets, and
fences by the lease token as docs/design.md asks a target to.

Each request is one line of JSON in the record file: arrival time, the peer, the
headers innohook sends (Idempotency-Key, X-Innohook-Seq, X-Innohook-Lease,
X-Innohook-Event-Id), the body's message id and status, and the answer. A request whose
X-Innohook-Lease is lower than the highest one already seen comes from a replica that has
lost the sink: it is answered 409 and recorded as stale; the others get 200, or 503 while
the file REFUSE_FILE exists (the target down for a while, the holder retrying).

    python3 partition_target.py ADDR PORT RECORD_FILE REFUSE_FILE
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
highest = 0
record = None
refuse = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global highest
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            event = json.loads(body)
            msg, status = event["body"].get("id"), event["body"].get("status")
        except (ValueError, KeyError, AttributeError):
            msg, status = None, None
        lease = int(self.headers.get("X-Innohook-Lease", "0"))
        with lock:
            stale = lease < highest
            highest = max(highest, lease)
            answer = 409 if stale else 503 if os.path.exists(refuse) else 200
            line = {
                "t": time.time(),
                "peer": self.client_address[0],
                "key": self.headers.get("Idempotency-Key"),
                "seq": int(self.headers.get("X-Innohook-Seq", "0")),
                "lease": lease,
                "highest": highest,
                "event_id": self.headers.get("X-Innohook-Event-Id"),
                "msg": msg,
                "status": status,
                "answer": answer,
            }
            record.write(json.dumps(line) + "\n")
            record.flush()
        text = {200: b"ok", 409: b"stale lease", 503: b"down"}[answer]
        self.send_response(answer)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


def main():
    global record, refuse
    addr, port, path, refuse = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    record = open(path, "a", encoding="utf-8")
    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
