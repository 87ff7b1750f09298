#!/usr/bin/env python3
"""Writes the simulator's accounts and their Maildir fixtures: SIM/accounts (name TAB behaviour)
and SIM/store/NAME/Maildir/{cur,new,.Sent/cur,...}. Behaviours: ok (served), empty (no message:
an archive of folder .meta entries), error (HTTP 500 with Zimbra's error page), cut (the stream
stops half way), short (a well-formed archive of the first 5 messages, HTTP 200, as
ArchiveFormatter ends after an error in its item loop), maintenance (HTTP 404; GetFolder refused).
The accounts file is read on every request: a test may change a behaviour while it runs."""
import json
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

# The directory zmprov serves (SIM/directory.json): the domain, two classes of service, every
# account with a password hash (Zimbra's {SSHA512}), a COS, an alias, a Sieve script with a blank
# line and a comment, signatures and an identity; a list with an outside member.
DEFAULT_COS = "e00428a1-0c00-11d9-836a-000d93afea2a"
PEGAWAI_COS = "5f0c3b7e-6a41-4c1e-9d55-7c3a2f1e0b01"
SIEVE = 'require ["fileinto"];\n\n# arsip\nif header :contains "subject" "Laporan" {\n    fileinto "Arsip";\n}'


def ssha512(name):
    import base64
    import hashlib
    salt = hashlib.sha256(name.encode()).digest()[:8]
    return "{SSHA512}" + base64.b64encode(hashlib.sha512(b"rahasia" + salt).digest() + salt).decode()


directory = {
    "domains": {"djki.go.id": {
        "zimbraDomainName": ["djki.go.id"], "zimbraDomainStatus": ["active"],
        "zimbraDomainType": ["local"], "zimbraId": ["b7e1c6a4-2f3d-4e5a-8b9c-0d1e2f3a4b5c"],
        "description": ["Direktorat Jenderal Kekayaan Intelektual"],
        "zimbraDomainDefaultCOSId": [DEFAULT_COS],
        "objectClass": ["dcObject", "organization", "zimbraDomain", "amavisAccount"],
    }},
    "cos": {
        "default": {"cn": ["default"], "description": ["The default COS"], "zimbraId": [DEFAULT_COS],
                    "zimbraMailQuota": ["0"], "objectClass": ["zimbraCOS"]},
        "pegawai": {"cn": ["pegawai"], "description": ["Pegawai DJKI"], "zimbraId": [PEGAWAI_COS],
                    "zimbraMailQuota": ["2147483648"], "objectClass": ["zimbraCOS"]},
    },
    "accounts": {}, "lists": {}, "signatures": {}, "identities": {},
}
for name, _, _ in ACCOUNTS:
    local = name.split("@")[0]
    directory["accounts"][name] = {
        "objectClass": ["inetOrgPerson", "zimbraAccount", "amavisAccount"],
        "zimbraId": [str(__import__("uuid").uuid5(__import__("uuid").NAMESPACE_DNS, name))],
        "mail": [name], "uid": [local], "zimbraMailDeliveryAddress": [name],
        "cn": [local.title()], "sn": [local], "displayName": [local.title() + " DJKI"],
        "userPassword": [ssha512(name)], "zimbraAccountStatus": ["active"],
        "zimbraMailStatus": ["enabled"], "zimbraCreateTimestamp": ["20250101000000Z"],
        "zimbraMailHost": ["mail.djki.go.id"], "zimbraPrefTimeZoneId": ["Asia/Jakarta"],
    }
ani = directory["accounts"]["ani@djki.go.id"]
ani["zimbraCOSId"] = [PEGAWAI_COS]
ani["zimbraMailAlias"] = ["ani.sekretariat@djki.go.id"]
ani["mail"].append("ani.sekretariat@djki.go.id")
ani["zimbraMailSieveScript"] = [SIEVE]
ani["zimbraSignatureName"] = ["Ani"]
ani["zimbraSignatureId"] = ["0a1b2c3d-0000-4000-8000-000000000001"]
ani["zimbraPrefMailSignature"] = ["Salam,\nAni — Sekretariat DJKI"]
directory["signatures"]["ani@djki.go.id"] = [{
    "zimbraSignatureName": ["Resmi"], "zimbraSignatureId": ["0a1b2c3d-0000-4000-8000-000000000002"],
    "zimbraPrefMailSignature": ["Hormat kami,\nDirektorat Jenderal Kekayaan Intelektual"],
}]
directory["identities"]["ani@djki.go.id"] = [{
    "zimbraPrefIdentityName": ["Sekretariat"], "zimbraPrefIdentityId": ["0a1b2c3d-0000-4000-8000-000000000003"],
    "zimbraPrefFromAddress": ["ani.sekretariat@djki.go.id"], "zimbraPrefFromDisplay": ["Sekretariat DJKI"],
}]
directory["accounts"]["budi@djki.go.id"]["zimbraCOSId"] = [PEGAWAI_COS]
directory["lists"]["semua@djki.go.id"] = {
    "zimbraId": ["9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"], "mail": ["semua@djki.go.id"],
    "zimbraMailAlias": ["semua@djki.go.id"], "uid": ["semua"], "displayName": ["Semua Pegawai"],
    "zimbraMailStatus": ["enabled"], "objectClass": ["zimbraDistributionList", "zimbraMailRecipient"],
    "zimbraMailForwardingAddress": ["ani@djki.go.id", "budi@djki.go.id", "mitra@example.org"],
}
with open(os.path.join(sim, "directory.json"), "w") as f:
    json.dump(directory, f, indent=1, sort_keys=True)

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
