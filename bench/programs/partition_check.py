"""Checks a bench/partition.sh run against what docs/design.md promises under a partition.

    python3 partition_check.py WORK          # the full check, after the run
    python3 partition_check.py WORK --wait   # exit 0 once every acknowledged event is at the target

WORK holds driver.jsonl (every push and its answer), target.jsonl (every request the
target got), timeline.txt (each partition: name, kind, replica, cut and healed times),
and, for the full check, events.csv (seq, message id, status of every stored event) and
dead_letters.txt (their count). Replica K's address is 10.77.K.2.
"""

import csv
import json
import sys
from collections import defaultdict


def lines(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except ValueError:
                    pass  # a line being written


def replica_of(peer):
    return int(peer.split(".")[2])


def main():
    work = sys.argv[1]
    pushes = list(lines(f"{work}/driver.jsonl"))
    arrivals = list(lines(f"{work}/target.jsonl"))
    acked = {p["key"] for p in pushes if p["code"] == 200}
    taken = [a for a in arrivals if a["answer"] == 200]
    at_target = {a["key"] for a in taken}
    missing_at_target = acked - at_target
    if "--wait" in sys.argv:
        print(f"{len(acked) - len(missing_at_target)} of {len(acked)} acknowledged events at the target")
        sys.exit(0 if not missing_at_target else 1)

    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    stored = {}
    with open(f"{work}/events.csv", encoding="utf-8") as f:
        for seq, msg, status in csv.reader(f):
            stored[f"{msg}:{status}"] = int(seq)
    dead = int(open(f"{work}/dead_letters.txt").read().strip() or 0)
    timeline = []
    with open(f"{work}/timeline.txt", encoding="utf-8") as f:
        for line in f:
            name, kind, replica, cut, healed = line.split()
            timeline.append((name, kind, int(replica), float(cut), float(healed)))

    codes = defaultdict(int)
    for p in pushes:
        codes[p["code"]] += 1
    others = ", ".join(f"{c or 'no answer'}: {n}" for c, n in sorted(codes.items()) if c != 200)
    print(f"pushes: {len(pushes)}, answered 200: {len(acked)} "
          f"(others: {others or 'none'})")
    print(f"stored events: {len(stored)}; requests at the target: {len(arrivals)}, "
          f"taken (200): {len(taken)}, refused as stale (409): "
          f"{sum(a['answer'] == 409 for a in arrivals)}, answered 503 (target down): "
          f"{sum(a['answer'] == 503 for a in arrivals)}")
    print()
    ends = [t[3] for t in timeline[1:]] + [float("inf")]
    for (name, kind, r, cut, healed), end in zip(timeline, ends):
        during = [a for a in arrivals if cut <= a["t"] < end]
        before = [a for a in arrivals if a["t"] < cut]
        old = max((a["lease"] for a in before), default=0)
        new_first = next((a for a in during if a["lease"] > old), None)
        old_last = max((a["t"] for a in arrivals if a["lease"] == old), default=None)
        window = [p for p in pushes if p["replica"] == r and p["t0"] < healed + 1 and p["t1"] > cut]
        unanswered = [p for p in window if p["code"] != 200]
        committed_anyway = [p for p in unanswered if p["key"] in stored]
        print(f"{name}: replica {r} {kind}, {healed - cut:.1f} s")
        if new_first:
            print(f"  lease token {old} -> {new_first['lease']} (replica {replica_of(new_first['peer'])}), "
                  f"first request under it {new_first['t'] - cut:.1f} s after the cut; "
                  f"last request under {old} {old_last - cut:+.1f} s from the cut")
        else:
            print(f"  lease token {old} kept (no takeover)")
        print(f"  pushes to replica {r} around the partition: {len(window)}, without a 200: "
              f"{len(unanswered)}, of those stored anyway: {len(committed_anyway)}")
        others = [p for p in pushes if p["replica"] != r and cut <= p["t0"] < healed]
        slowest = max((p["t1"] - p["t0"] for p in others), default=0)
        print(f"  pushes to the other replicas during the cut: {len(others)}, without a 200: "
              f"{sum(p['code'] != 200 for p in others)}, slowest answer {slowest:.2f} s")
        if kind in ("pg", "isolated"):
            check(new_first is not None and replica_of(new_first["peer"]) != r,
                  f"{name}: another replica took the sink over")
        if kind == "pg":
            check(new_first is not None and old_last is not None and old_last < new_first["t"],
                  f"{name}: no request under the old token after the new holder's first (timing, no fencing needed)")
        if kind == "target":
            check(new_first is None, f"{name}: the holder kept the sink (no takeover)")
        stale_here = [a for a in during if a["answer"] == 409]
        print(f"  requests refused as stale by the target's fencing: {len(stale_here)}"
              + "".join(f"\n    token {a['lease']} from replica {replica_of(a['peer'])}, "
                        f"{a['t'] - healed:+.1f} s from the heal, seq {a['seq']}" for a in stale_here))
        print()

    check(not [k for k in acked if k not in stored],
          f"every push answered 200 is in the store ({len(acked)})")
    check(not missing_at_target,
          f"every push answered 200 reached the target ({len(acked) - len(missing_at_target)} of {len(acked)})")
    # The target takes only requests whose token is not below one it has seen: check that
    # this fencing held, and that each token was one replica's.
    highest, below = 0, 0
    for a in arrivals:
        if a["answer"] == 200 and a["lease"] < highest:
            below += 1
        highest = max(highest, a["lease"])
    check(below == 0, "no request under a token lower than one already seen was taken")
    peers = defaultdict(set)
    for a in arrivals:
        peers[a["lease"]].add(a["peer"])
    check(all(len(p) == 1 for p in peers.values()),
          f"each lease token came from one replica ({', '.join(f'{t}: replica {replica_of(min(p))}' for t, p in sorted(peers.items()))})")
    stale_keys = {a["key"] for a in arrivals if a["answer"] == 409}
    check(stale_keys <= at_target,
          f"every request refused as stale ({len(stale_keys)}) was a repeat of an event taken from the holder")
    # Per message, the events as first taken by the target are in commit order.
    first = {}
    order = defaultdict(list)
    for a in taken:
        if a["key"] not in first:
            first[a["key"]] = a["seq"]
            order[a["msg"]].append(a["seq"])
    disorder = [m for m, seqs in order.items() if seqs != sorted(seqs)]
    check(not disorder, f"per message, the target first got the events in commit order ({len(order)} messages)")
    late = 0
    seen_max = defaultdict(int)
    for a in taken:
        if a["seq"] < seen_max[a["msg"]]:
            late += 1
        seen_max[a["msg"]] = max(seen_max[a["msg"]], a["seq"])
    # Duplicates: the same event again, with the same key, seq and store row.
    by_key = defaultdict(set)
    by_seq = defaultdict(set)
    for a in arrivals:
        by_key[a["key"]].add(a["seq"])
        by_seq[a["seq"]].add(a["key"])
    check(all(len(s) == 1 for s in by_key.values()) and all(len(k) == 1 for k in by_seq.values()),
          "a repeated request carries the same Idempotency-Key (and seq)")
    check(all(stored.get(k) == next(iter(s)) for k, s in by_key.items()),
          "each key's seq at the target is its event's seq in the store")
    dupes = len(taken) - len(first)
    print(f"      taken twice or more: {dupes} requests; of them after a later event of their message: {late}")
    check(dead == 0, f"no dead letters ({dead})")
    print()
    print("PASS" if not failures else f"FAIL: {len(failures)} checks")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
