#!/usr/bin/env python3
"""Writes the simulator's accounts and their Maildir fixtures: SIM/accounts (name TAB behaviour)
and SIM/store/NAME/Maildir/{cur,new,.Sent/cur,...}. Behaviours: ok (served), empty (no message:
an archive of folder .meta entries), error (HTTP 500 with Zimbra's error page), cut (the stream
stops half way), short (a well-formed archive of the first 5 messages, HTTP 200, as
ArchiveFormatter ends after an error in its item loop), maintenance (HTTP 404; GetFolder refused).
The accounts file is read on every request: a test may change a behaviour while it runs."""
import os
import sys

sim = sys.argv[1]
HOSTILE = "-x $(touch zpwned) o'b\"c;@djki.go.id"
ACCOUNTS = [
    ("admin@djki.go.id", "ok", {"": 1}),
    ("ani@djki.go.id", "ok", {"": 3, ".Sent": 2, ".Trash": 2, ".Junk": 1}),
    ("budi@djki.go.id", "ok", {"": 2}),
    (HOSTILE, "ok", {"": 1}),
    ("kosong@djki.go.id", "empty", {}),
    ("rusak@djki.go.id", "error", {"": 1}),
    ("putus@djki.go.id", "cut", {"": 40}),
    ("spam.a1b2c3@djki.go.id", "ok", {"": 1}),
    ("ham.d4e5f6@djki.go.id", "ok", {"": 1}),
    ("virus-quarantine.g7h8@djki.go.id", "ok", {"": 1}),
    ("galsync@djki.go.id", "ok", {"": 1}),
    ("pulih@djki.go.id", "ok", {}),
    ("pendek@djki.go.id", "short", {"": 20}),
    ("rawat@djki.go.id", "maintenance", {"": 3}),
    ("besar@djki.go.id", "ok", {"": 520}),
    ("ulang@djki.go.id", "ok", {"": 2}),
]

with open(os.path.join(sim, "accounts"), "w") as f:
    for name, behaviour, _ in ACCOUNTS:
        f.write(f"{name}\t{behaviour}\n")

for name, _, folders in ACCOUNTS:
    maildir = os.path.join(sim, "store", name, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    n = 0
    for folder, count in folders.items():
        for i in range(count):
            n += 1
            where = os.path.join(maildir, folder, "cur" if i % 2 == 0 else "new")
            os.makedirs(where, exist_ok=True)
            # Subjects with characters Zimbra's entry names replace ("/", ":", "?").
            subject = f"Laporan {n}/2026: {name.split('@')[0][:12]}?"
            body = "".join(f"baris {k} dari pesan {n} untuk {name}\r\n" for k in range(200 if name.startswith("putus") else 3))
            msg = (
                f"From: sender{n}@djki.go.id\r\nTo: {name}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{n}.{abs(hash(name))}@sim>\r\n\r\n{body}"
            )
            with open(os.path.join(where, f"{1700000000 + n}.M{n}P1.sim:2,S"), "w", newline="") as m:
                m.write(msg)
