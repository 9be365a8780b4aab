"""Posts message status events to innohook replicas for bench/partition.sh until a stop
file appears, and records every answer.

Each thread sends, message after message, the statuses sent, delivered and read of a
message of its own, each status to the next replica in turn, so that one message's
events are committed by different replicas. A replica that failed to answer 200 is
left out for two seconds (as a load balancer would), and nothing is sent again: a push
without a 200 is the sender's loss, as InnoPaaS documents no retries.

One line of JSON per push in the record file: when it was sent and answered, the
replica, the message, the status, the Idempotency-Key the forward sink will give it,
and the HTTP status (0: no answer in time, or the connection failed).

    python3 partition_driver.py RECORD_FILE STOP_FILE THREADS URL...
"""

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse

STATUSES = ["sent", "delivered", "read"]
TIMEOUT = 8.0
LEAVE_OUT = 2.0

lock = threading.Lock()


def event(msg, status):
    return json.dumps({
        "id": f"e-{msg}-{status}",
        "type": "whatsapp_message_status_updated",
        "eventTime": "2026-03-01T10:00:00.000Z",
        "body": {"id": msg, "accountName": "a", "wabaId": "w", "status": status,
                 "wamid": f"wamid.{msg}", "sendPhone": "6512345678", "uid": "partition"},
    }).encode()


def run(t, urls, record, stop_file):
    targets = [urlparse(u) for u in urls]
    conns = [None] * len(urls)
    left_out = [0.0] * len(urls)
    turn = t
    i = 0
    while not os.path.exists(stop_file):
        msg = f"p{t}-{i}"
        i += 1
        for status in STATUSES:
            now = time.time()
            for _ in range(len(urls)):
                turn = (turn + 1) % len(urls)
                if left_out[turn] <= now:
                    break
            r = turn
            body = event(msg, status)
            t0 = time.time()
            code, answer = 0, None
            try:
                if conns[r] is None:
                    conns[r] = http.client.HTTPConnection(
                        targets[r].hostname, targets[r].port, timeout=TIMEOUT)
                conns[r].request("POST", targets[r].path, body,
                                 {"Content-Type": "application/json"})
                res = conns[r].getresponse()
                code = res.status
                text = res.read()
                if code == 200:
                    answer = json.loads(text).get("status")
            except (OSError, http.client.HTTPException, ValueError):
                if conns[r] is not None:
                    conns[r].close()
                conns[r] = None
            if code != 200:
                left_out[r] = time.time() + LEAVE_OUT
            line = {"t0": t0, "t1": time.time(), "replica": r + 1, "msg": msg,
                    "status": status, "key": f"{msg}:{status}", "code": code,
                    "answer": answer}
            with lock:
                record.write(json.dumps(line) + "\n")
        time.sleep(0.005)


def main():
    path, stop_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    urls = sys.argv[4:]
    with open(path, "a", encoding="utf-8") as record:
        workers = [threading.Thread(target=run, args=(t, urls, record, stop_file))
                   for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


if __name__ == "__main__":
    main()
