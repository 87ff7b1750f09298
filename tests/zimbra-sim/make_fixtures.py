#!/usr/bin/env python3
"""Writes the simulator's directory, accounts and their Maildir fixtures: SIM/directory.json (the
directory zmprov serves, see zmprov's docstring), SIM/accounts (name TAB behaviour) and
SIM/store/DIR/Maildir/{cur,new,.Sent/cur,...} (DIR = store_dir(name), server.py's: the name
as is, a "/" in it making nested folders). Behaviours: ok (served), empty (no message: an
archive of folder .meta entries), error (HTTP 500 with Zimbra's error page), cut (the stream
stops half way), short (a well-formed archive of the first 5 messages, HTTP 200, as
ArchiveFormatter ends after an error in its item loop), maintenance (HTTP 404; GetFolder
refused). The accounts file is read on every request: a test may change a behaviour while it
runs. (realistic.py and reinstall.py replace all of this with other directories.)

The directory: the server mail.djki.go.id (localconfig zimbra_server_hostname) with a fixed id;
the classes of service default and defaultExternal as a fresh install has them, and pegawai, all
with zimbraMailHostPool = that server (zmsetup gives the default class the installing server,
every class made after copies it); the domain; every account with a password hash (Zimbra's
{SSHA512}), a COS, an alias, a Sieve script with a blank line and a comment, signatures and an
identity; a list with an outside member."""
import base64
import hashlib
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
    # The restore drill's scratch account (RESTORE_DRILL_ACCOUNT), empty.
    ("latihan@djki.go.id", "ok", {}),
    # Mail as the field has it (CORPUS below), and an empty account to restore it into.
    ("ragam@djki.go.id", "ok", {}),
    ("salinan@djki.go.id", "ok", {}),
]
CORPUS_ACCOUNT = "ragam@djki.go.id"


def store_dir(name):
    """An account's folder under SIM/store (server.py's store_dir): its name as is, a "/" in it
    making nested folders (as Path::join(name) finds them); a name with an empty, "." or ".."
    part (it would leave the store) has "%" and "/" written %25 and %2F instead."""
    if any(p in ("", ".", "..") for p in name.split("/")):
        return name.replace("%", "%25").replace("/", "%2F")
    return name


def localconfig(key):
    with open(os.path.join(sim, "localconfig")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" = ")
            if k == key:
                return v
    raise KeyError(key)


# The host scripts/lib.sh (start_zimbra_sim) writes into the simulator's localconfig.
HOST = localconfig("zimbra_server_hostname")
DEFAULT_COS = "e00428a1-0c00-11d9-836a-000d93afea2a"
DEFAULT_EXTERNAL_COS = "f27456a8-0c00-11d9-280a-286d93afea2g"
PEGAWAI_COS = "5f0c3b7e-6a41-4c1e-9d55-7c3a2f1e0b01"
SERVER_ID = "2c1d0e9f-8a7b-4c6d-9e5f-4a3b2c1d0e9f"
SIEVE = 'require ["fileinto"];\n\n# arsip\nif header :contains "subject" "Laporan" {\n    fileinto "Arsip";\n}'


def ssha512(name):
    import base64
    import hashlib
    salt = hashlib.sha256(name.encode()).digest()[:8]
    return "{SSHA512}" + base64.b64encode(hashlib.sha512(b"rahasia" + salt).digest() + salt).decode()


directory = {
    # A server entry as zmsetup leaves it (ZCS 8.5 and later: zimbraServerVersion set, so
    # Server.hasMailClientService looks for the "service" webapp); its TLS key is in it too.
    "servers": {HOST: {
        "cn": [HOST], "zimbraId": [SERVER_ID], "zimbraServiceHostname": [HOST],
        "objectClass": ["zimbraServer"], "zimbraServerVersion": ["10.1.9_GA_4200"],
        "zimbraCreateTimestamp": ["20250101000000Z"],
        "zimbraServiceInstalled": ["amavis", "antispam", "antivirus", "opendkim", "dnscache", "ldap", "logger", "mailbox",
                                   "memcached", "mta", "proxy", "service", "snmp", "spell", "stats", "zimbra",
                                   "zimbraAdmin", "zimlet"],
        "zimbraServiceEnabled": ["amavis", "antispam", "antivirus", "opendkim", "dnscache", "ldap", "logger", "mailbox",
                                 "memcached", "mta", "proxy", "service", "snmp", "spell", "stats", "zimbra",
                                 "zimbraAdmin", "zimlet"],
        "zimbraSSLPrivateKey": ["-----BEGIN PRIVATE KEY-----\nU0lNVUxBVE9SIEtFWQ==\n-----END PRIVATE KEY-----"],
    }},
    "domains": {"djki.go.id": {
        "zimbraDomainName": ["djki.go.id"], "zimbraDomainStatus": ["active"],
        "zimbraDomainType": ["local"], "zimbraId": ["b7e1c6a4-2f3d-4e5a-8b9c-0d1e2f3a4b5c"],
        "description": ["Direktorat Jenderal Kekayaan Intelektual"],
        "zimbraDomainDefaultCOSId": [DEFAULT_COS],
        "objectClass": ["dcObject", "organization", "zimbraDomain", "amavisAccount"],
    }},
    "cos": {
        "default": {"cn": ["default"], "description": ["The default COS"], "zimbraId": [DEFAULT_COS],
                    "zimbraMailQuota": ["0"], "objectClass": ["zimbraCOS"], "zimbraMailHostPool": [SERVER_ID]},
        "defaultExternal": {"cn": ["defaultExternal"], "description": ["The default external users COS"],
                            "zimbraId": [DEFAULT_EXTERNAL_COS], "zimbraMailQuota": ["0"], "objectClass": ["zimbraCOS"],
                            "zimbraFeatureMailEnabled": ["FALSE"], "zimbraMailHostPool": [SERVER_ID]},
        "pegawai": {"cn": ["pegawai"], "description": ["Pegawai DJKI"], "zimbraId": [PEGAWAI_COS],
                    "zimbraMailQuota": ["2147483648"], "objectClass": ["zimbraCOS"], "zimbraMailHostPool": [SERVER_ID]},
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
    maildir = os.path.join(sim, "store", store_dir(name), "Maildir")
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


def corpus():
    """(Zimbra folder path, Maildir flags, received time, message bytes) of CORPUS_ACCOUNT: mail
    as servers hold it. Folded, very long and missing Message-IDs; one message twice in Inbox
    (byte for byte) and again in two other folders; two copies of one Message-ID that differ in
    their Received lines; raw 8-bit UTF-8 and Latin-1 subjects, RFC 2047 subjects (folded, Q,
    ISO-2022-JP); no subject, an empty one, one of dots, one longer than an entry name; LF-only
    line ends; a NUL byte; a message of about 3 MB (a base64 attachment, generated); unread,
    flagged, replied, forwarded, draft; mail in Junk and Trash (not exported)."""
    import random

    def m(headers, body, eol=b"\r\n"):
        lines = [h if isinstance(h, bytes) else h.encode() for h in headers]
        body = body if isinstance(body, bytes) else body.encode()
        return eol.join(lines) + eol + eol + body.replace(b"\n", eol)

    def basic(n, subject, extra=(), body=None):
        return m([f"From: Pengirim {n} <pengirim{n}@djki.go.id>", f"To: {CORPUS_ACCOUNT}",
                  f"Date: Mon, {n % 28 + 1:02d} Dec 2025 09:{n % 60:02d}:00 +0700"]
                 + ([f"Subject: {subject}"] if subject is not None else []) + list(extra)
                 + [f"Message-ID: <corpus-{n}@mail.djki.go.id>"],
                 body or f"Isi pesan {n}.\nBaris kedua.\n")

    undangan = m(["From: Sekretariat <sekretariat@djki.go.id>", f"To: {CORPUS_ACCOUNT}",
                  "Subject: Undangan rapat pimpinan", "Date: Tue, 02 Dec 2025 08:00:00 +0700",
                  "Message-ID: <undangan-rapat-2025-12@mail.djki.go.id>", "MIME-Version: 1.0",
                  "Content-Type: text/plain; charset=utf-8"], "Rapat pimpinan hari Kamis pukul 09.00.\n")
    rng = random.Random(26)
    blob = base64.encodebytes(rng.randbytes(2_200_000)).replace(b"\n", b"\r\n")
    huge = m(["From: Arsip <arsip@djki.go.id>", f"To: {CORPUS_ACCOUNT}", "Subject: Pindaian berkas 2025 (besar)",
              "Date: Wed, 03 Dec 2025 10:00:00 +0700", "Message-ID: <pindaian-2025@mail.djki.go.id>",
              "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="batas"'],
             b"--batas\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTerlampir.\r\n--batas\r\n"
             b'Content-Type: application/octet-stream; name="pindaian.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
             + blob + b"--batas--\r\n")
    received = ["Received: from mx1.djki.go.id by mail.djki.go.id; Thu, 04 Dec 2025 07:00:00 +0700",
                "Received: from mx2.djki.go.id by mail.djki.go.id; Thu, 04 Dec 2025 07:00:03 +0700"]
    twice = [m([r, "From: Humas <humas@djki.go.id>", f"To: {CORPUS_ACCOUNT}", "Subject: Siaran pers",
                "Date: Thu, 04 Dec 2025 06:59:00 +0700", "Message-ID: <siaran-pers-42@djki.go.id>"],
               "Siaran pers terlampir.\n") for r in received]
    out = [
        ("Inbox", "S", m(["From: Direktorat Merek <merek@djki.go.id>", f"To: {CORPUS_ACCOUNT}",
                          "Subject: Message-ID terlipat", "Date: Mon, 01 Dec 2025 09:00:00 +0700",
                          "Message-ID:", " <20251201090000.folded.1234567890abcdef@mail.djki.go.id>"],
                         "Message-ID di baris berikutnya.\n")),
        ("Inbox", "S", m(["From: Sistem <noreply@djki.go.id>", f"To: {CORPUS_ACCOUNT}",
                          "Subject: Message-ID sangat panjang", "Date: Mon, 01 Dec 2025 09:05:00 +0700",
                          "Message-ID: <" + "a1b2c3d4" * 110 + "@mail.djki.go.id>"], "Panjang.\n")),
        ("Inbox", "S", m(["From: Lama <lama@djki.go.id>", f"To: {CORPUS_ACCOUNT}", "Subject: Tanpa Message-ID",
                          "Date: Mon, 01 Dec 2025 09:10:00 +0700"], "Tidak ada Message-ID.\n")),
        ("Inbox", "S", undangan),
        ("Inbox", "S", undangan),
        ("Inbox", "S", twice[0]),
        ("Inbox", "S", twice[1]),
        ("Inbox", "S", basic(1, None, ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"])),
        ("Inbox", "S", m([b"From: Pusat Data <data@djki.go.id>", f"To: {CORPUS_ACCOUNT}".encode(),
                          "Subject: Rapat koordinasi — ruang 3 ✓ Ærø".encode(),
                          b"Date: Mon, 01 Dec 2025 10:00:00 +0700", b"Message-ID: <utf8-raw@djki.go.id>",
                          b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8",
                          b"Content-Transfer-Encoding: 8bit"], "Subjek 8-bit tanpa pengodean: ✓.\n".encode())),
        ("Inbox", "S", m([b"From: Kafe <kafe@example.org>", f"To: {CORPUS_ACCOUNT}".encode(), b"Subject: Caf\xe9 pagi",
                          b"Date: Mon, 01 Dec 2025 10:05:00 +0700", b"Message-ID: <latin1-raw@example.org>",
                          b"Content-Type: text/plain; charset=iso-8859-1"], b"Men\xfa hari ini.\n")),
        ("Inbox", "S", m(["From: =?UTF-8?Q?Bagian_Umum_=E2=80=94_DJKI?= <umum@djki.go.id>", f"To: {CORPUS_ACCOUNT}",
                          "Subject: =?UTF-8?B?UGVuZ3VtdW1hbiDigJQ=?=",
                          "\t=?UTF-8?Q?libur_akhir_tahun_=C3=A6=C3=B8=C3=A5?=",
                          "Date: Mon, 01 Dec 2025 10:10:00 +0700", "Message-ID: <rfc2047@djki.go.id>"], "Libur.\n")),
        ("Inbox", "S", basic(2, "Baris LF saja", body="Pesan ini\nhanya memakai LF.\n").replace(b"\r\n", b"\n")),
        ("Inbox", "S", basic(3, "Ada byte NUL", body=b"Sebelum\x00sesudah NUL.\n")),
        ("Inbox", "S", basic(4, "Subjek yang sangat panjang: laporan/rekap* triwulan? <final> \"revisi\" | "
                                + "kata " * 30 + "akhir")),
        ("Inbox", "S", basic(5, "")),
        ("Inbox", "S", basic(6, "Laporan akhir tahun...")),
        ("Inbox", "S", basic(7, "...")),
        ("Inbox", "", basic(8, "Belum dibaca")),
        ("Inbox", "FRS", basic(9, "Ditandai dan dibalas")),
        ("Inbox", "PS", basic(10, "Diteruskan")),
        ("Inbox", "S", basic(11, "Subjek dengan tab\tdi tengah")),
        ("Sent", "S", basic(12, "Re: Undangan rapat pimpinan", ["Bcc: arsip@djki.go.id"])),
        ("Sent", "S", basic(13, "Laporan terkirim")),
        ("Drafts", "DS", m(["From: " + CORPUS_ACCOUNT, "To: ", "Subject: Konsep surat"], "Belum selesai.\n")),
        ("Junk", "", basic(14, "Anda menang undian!!!")),
        ("Trash", "S", basic(15, "Terhapus")),
        ("Trash/Lama", "S", basic(16, "Terhapus lama")),
        ("Arsip", "S", undangan),
        ("Arsip", "S", huge),
        ("Arsip", "S", basic(17, "Arsip biasa")),
        ("Kosong", None, None),
        ("Hukum & Kepatuhan", "S", basic(18, "Nota dinas hukum & kepatuhan")),
        ("Hukum & Kepatuhan", "", basic(19, "Perjanjian <draf> & lampiran")),
        ("Surat Masuk Lama", "S", basic(20, "Surat lama")),
        ("Ærø Ünïcödé", "S", basic(21, "Folder bukan ASCII")),
        ("日本語", "S", m(["From: Tokyo <tokyo@example.jp>", f"To: {CORPUS_ACCOUNT}",
                          "Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", "Date: Mon, 01 Dec 2025 11:00:00 +0700",
                          "Message-ID: <iso2022@example.jp>", "Content-Type: text/plain; charset=ISO-2022-JP"],
                         b"\x1b$BF|K\\8l\x1b(B\n")),
        ("Laporan 2026.01", "S", basic(22, "Folder bertitik")),
        ("Tanya? Jawab*", "S", basic(23, "Folder dengan tanda tanya")),
        ("Proyek", "S", basic(24, "Proyek induk")),
        ("Proyek/2026", None, None),
        ("Proyek/2026/Kosong", None, None),
        ("Proyek/2026/Triwulan 1", "S", basic(25, "Triwulan pertama")),
        ("Proyek/2026/Triwulan 1/Januari", None, None),
        ("Proyek/2026/Triwulan 1/Januari/Minggu 1", None, None),
        ("Proyek/2026/Triwulan 1/Januari/Minggu 1/Senin", "S", basic(26, "Enam tingkat")),
        ("Proyek/2026/Triwulan 1/Januari/Minggu 1/Senin", "S", undangan),
    ]
    return out


def maildir_dir(folder):
    """server.py's store layout: Inbox the top, A/B in ".A.B", "." and "%" in a name as %2E, %25."""
    if folder == "Inbox":
        return ""
    return "." + ".".join(p.replace("%", "%25").replace(".", "%2E") for p in folder.split("/"))


# CORPUS_ACCOUNT's mail, and SIM/corpus.json: every folder (Zimbra path) with the SHA-256 of each
# of its messages, the fixture the tests compare a restore with.
maildir = os.path.join(sim, "store", store_dir(CORPUS_ACCOUNT), "Maildir")
manifest = {}
for i, (folder, flags, data) in enumerate(corpus()):
    parts = folder.split("/")
    for k in range(1, len(parts) + 1):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, maildir_dir("/".join(parts[:k])), sub), exist_ok=True)
        manifest.setdefault("/".join(parts[:k]), [])
    if data is None:
        continue
    when = 1764550000 + 600 * i
    name = f"{when}.M{i}P1.ragam:2,{flags}"
    path = os.path.join(maildir, maildir_dir(folder), "cur" if "S" in flags else "new", name)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (when, when))
    manifest[folder].append(hashlib.sha256(data).hexdigest())
with open(os.path.join(sim, "corpus.json"), "w") as f:
    json.dump({"account": CORPUS_ACCOUNT, "folders": manifest}, f, indent=1, ensure_ascii=False, sort_keys=True)
