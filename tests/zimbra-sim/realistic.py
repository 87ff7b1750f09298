#!/usr/bin/env python3
"""Usage: realistic.py SIM. Makes the simulator SIM an organisation's old Zimbra server, as it is
before a disaster: replaces SIM/directory.json, SIM/accounts and everything in SIM/store (the
files are rewritten in place, so their owner stays; new folders get SIM/store's owner).

- The server mail.djki.go.id (localconfig zimbra_server_hostname), id SERVER_ID, with the mail
  client service.
- Classes of service: default and defaultExternal with the ids every install's LDIF gives them
  (AttributeManagerUtil.generateDefaultCOSLdif / generateDefaultExternalCOSLdif), pegawai and
  pimpinan (different zimbraMailQuota); every one with zimbraMailHostPool = SERVER_ID (zmsetup
  gives the default class the installing server; createCos copies it).
- Domains: djki.go.id, its default class pegawai (zimbraDomainDefaultCOSId) and its GAL sync
  account (zimbraGalAccountId); dgip.go.id, its default class pimpinan.
- Accounts (COS: "direct" = zimbraCOSId on the account, else through the domain):
    galsync.abc123@djki.go.id  the GAL sync account (system: zimbraIsSystemResource)
    admin@djki.go.id           the administrator              pegawai via djki.go.id
    kepala@djki.go.id          Dr. Razilu, two aliases        pimpinan direct
    sekretaris@djki.go.id      an alias in dgip.go.id         pimpinan direct
    siti.aisyah@djki.go.id     non-ASCII name                 pegawai via djki.go.id
    budi.santoso@djki.go.id                                   pegawai via djki.go.id
    bagian/umum@djki.go.id     a "/" in its name              pegawai via djki.go.id
    o'brien@djki.go.id         a "'" in its name              pegawai via djki.go.id
    kas$umum@djki.go.id        a "$" in its name              pegawai via djki.go.id
    rina@dgip.go.id            the other domain               pimpinan via dgip.go.id
  each with an {SSHA512} password hash, zimbraMailHost mail.djki.go.id, a few messages; Sieve
  scripts on kepala and sekretaris; signatures (the account's own slot and extra ones) and
  identities on kepala and sekretaris.
- Lists: semua.pegawai@djki.go.id (aliases seluruh.pegawai@djki.go.id, all@dgip.go.id; members
  the staff, rina@dgip.go.id, mitra@example.org from outside and the list pimpinan@djki.go.id);
  pimpinan@djki.go.id (alias para.pimpinan@djki.go.id; members kepala, sekretaris).
- SIM/accounts: every account, behaviour ok.
Prints nothing when it succeeds."""
import base64
import hashlib
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # nothing written beside the sources
from simlib import localconfig, store_dir  # noqa: E402

SIM = sys.argv[1]


def ssha512(name, password):
    """Zimbra's {SSHA512}: SHA-512 of password + salt, then the salt, base64."""
    salt = hashlib.sha256(("salt:" + name).encode()).digest()[:8]
    return "{SSHA512}" + base64.b64encode(hashlib.sha512(password.encode() + salt).digest() + salt).decode()


HOST = localconfig(SIM, "zimbra_server_hostname", "mail.djki.go.id")
TRANSPORT = f"lmtp:{HOST}:7025"
SERVER_ID = "7b3e1f0a-4c2d-4e8f-9a1b-5c6d7e8f9a0b"
# The ids every install gives its two built-in classes (AttributeManagerUtil's LDIF generators).
DEFAULT_COS = "e00428a1-0c00-11d9-836a-000d93afea2a"
DEFAULT_EXTERNAL_COS = "f27456a8-0c00-11d9-280a-286d93afea2g"
PEGAWAI_COS = "3c9a8b7d-1e2f-4a5b-8c6d-7e8f9a0b1c2d"
PIMPINAN_COS = "4d0b9c8e-2f3a-4b6c-9d7e-8f9a0b1c2d3e"
DJKI_ID = "5e1c0d9f-3a4b-4c7d-8e8f-9a0b1c2d3e4f"
DGIP_ID = "6f2d1e0a-4b5c-4d8e-9f9a-0b1c2d3e4f5a"
GALSYNC = "galsync.abc123@djki.go.id"
GALSYNC_DGIP = "galsync.def456@dgip.go.id"
SERVICES = ["amavis", "antispam", "antivirus", "opendkim", "dnscache", "ldap", "logger", "mailbox", "memcached",
            "mta", "proxy", "service", "snmp", "spell", "stats", "zimbra", "zimbraAdmin", "zimlet"]
CREATED = "20190312080000Z"


def acct_id(n):
    return f"a{n:07d}-1b2c-4d3e-8f4a-5b6c7d8e9f0a"


# name: (id number, displayName or None, direct COS id or None, extra attributes, folders {Maildir
# folder: message count})
ACCOUNTS = {
    GALSYNC: (1, None, None, {
        "zimbraIsSystemResource": ["TRUE"], "zimbraIsSystemAccount": ["TRUE"], "zimbraHideInGal": ["TRUE"],
        "zimbraContactMaxNumEntries": ["0"], "cn": ["galsync.abc123"]}, {}),
    GALSYNC_DGIP: (90, None, None, {
        "zimbraIsSystemResource": ["TRUE"], "zimbraIsSystemAccount": ["TRUE"], "zimbraHideInGal": ["TRUE"],
        "zimbraContactMaxNumEntries": ["0"], "cn": ["galsync.def456"]}, {}),
    "admin@djki.go.id": (2, "Administrator", None, {"zimbraIsAdminAccount": ["TRUE"]}, {"": 2}),
    "kepala@djki.go.id": (3, "Dr. Razilu, M.Si.", PIMPINAN_COS, {
        "givenName": ["Razilu"], "sn": ["Razilu"], "title": ["Direktur Jenderal"]}, {"": 3, ".Sent": 2}),
    "sekretaris@djki.go.id": (4, "Dewi Lestari — Sekretariat", PIMPINAN_COS, {
        "givenName": ["Dewi"], "sn": ["Lestari"]}, {"": 3, ".Sent": 1, ".Arsip": 1}),
    "siti.aisyah@djki.go.id": (5, "Siti Aisyah Ñúñez", None, {"givenName": ["Siti"], "sn": ["Ñúñez"]}, {"": 3}),
    "budi.santoso@djki.go.id": (6, "Budi Santoso", None, {"givenName": ["Budi"], "sn": ["Santoso"]}, {"": 2, ".Sent": 1}),
    "bagian/umum@djki.go.id": (7, "Bagian Umum", None, {}, {"": 3}),
    "o'brien@djki.go.id": (8, "Patrick O'Brien", None, {"givenName": ["Patrick"], "sn": ["O'Brien"]}, {"": 2}),
    "kas$umum@djki.go.id": (9, "Kas Umum", None, {}, {"": 2}),
    "rina@dgip.go.id": (10, "Rina Marlina", None, {"givenName": ["Rina"], "sn": ["Marlina"]}, {"": 2}),
}
ALIASES = {
    "kepala@djki.go.id": ["direktur.jenderal@djki.go.id", "dirjen@djki.go.id"],
    "sekretaris@djki.go.id": ["sekretariat@dgip.go.id"],
}
SIEVE = {
    "kepala@djki.go.id": 'require ["fileinto"];\n\n# undangan rapat\nif header :contains "subject" "Undangan" {\n'
                         '    fileinto "Undangan";\n    stop;\n}',
    "sekretaris@djki.go.id": 'require ["fileinto", "reject"];\n# arsip surat dinas\n'
                             'if address :domain :is "from" "dgip.go.id" {\n    fileinto "Arsip";\n}\n\n'
                             'if header :contains "subject" "[SPAM]" {\n    discard;\n}',
}
# The account's own signature slot (on its entry) and extra signature entries; identities.
OWN_SIGNATURE = {
    "kepala@djki.go.id": ("Dirjen", "b1000001-0000-4000-8000-000000000001",
                          "Hormat kami,\nDr. Razilu, M.Si.\nDirektur Jenderal Kekayaan Intelektual"),
    "sekretaris@djki.go.id": ("Sekretariat", "b1000002-0000-4000-8000-000000000001",
                              "Salam,\nDewi Lestari — Sekretariat DJKI"),
}
SIGNATURES = {
    "kepala@djki.go.id": [("Singkat", "b1000001-0000-4000-8000-000000000002", "— Razilu"),
                          ("Resmi", "b1000001-0000-4000-8000-000000000003",
                           "Direktorat Jenderal Kekayaan Intelektual\nKementerian Hukum")],
    "sekretaris@djki.go.id": [("Resmi", "b1000002-0000-4000-8000-000000000002",
                               "Sekretariat Direktorat Jenderal\nJl. H.R. Rasuna Said Kav. 8-9, Jakarta")],
}
IDENTITIES = {
    "kepala@djki.go.id": [("Dirjen", "c1000001-0000-4000-8000-000000000001", "direktur.jenderal@djki.go.id",
                           "Direktur Jenderal KI")],
    "sekretaris@djki.go.id": [("DGIP", "c1000002-0000-4000-8000-000000000001", "sekretariat@dgip.go.id",
                               "Sekretariat DGIP"),
                              ("Sekretariat", "c1000002-0000-4000-8000-000000000002", "sekretaris@djki.go.id",
                               "Sekretariat DJKI")],
}
LISTS = {
    "semua.pegawai@djki.go.id": ("d1000001-0000-4000-8000-000000000001", "Semua Pegawai DJKI",
                                 ["seluruh.pegawai@djki.go.id", "all@dgip.go.id"],
                                 ["siti.aisyah@djki.go.id", "budi.santoso@djki.go.id", "bagian/umum@djki.go.id",
                                  "o'brien@djki.go.id", "kas$umum@djki.go.id", "rina@dgip.go.id",
                                  "mitra@example.org", "pimpinan@djki.go.id"]),
    "pimpinan@djki.go.id": ("d1000002-0000-4000-8000-000000000001", "Pimpinan DJKI",
                            ["para.pimpinan@djki.go.id"], ["kepala@djki.go.id", "sekretaris@djki.go.id"]),
}


def server():
    return {"cn": [HOST], "zimbraId": [SERVER_ID], "zimbraServiceHostname": [HOST], "objectClass": ["zimbraServer"],
            "zimbraServerVersion": ["10.1.9_GA_4200"], "zimbraCreateTimestamp": [CREATED],
            "zimbraServiceInstalled": list(SERVICES), "zimbraServiceEnabled": list(SERVICES),
            "zimbraSSLPrivateKey": ["-----BEGIN PRIVATE KEY-----\nT0xEIFNFUlZFUiBLRVk=\n-----END PRIVATE KEY-----"]}


def cos(name, zid, description, quota, extra=None):
    e = {"cn": [name], "zimbraId": [zid], "description": [description], "objectClass": ["zimbraCOS"],
         "zimbraMailQuota": [quota], "zimbraMailHostPool": [SERVER_ID], "zimbraCreateTimestamp": [CREATED]}
    e.update(extra or {})
    return e


def domain(name, zid, description, default_cos, extra=None):
    e = {"zimbraDomainName": [name], "zimbraId": [zid], "description": [description],
         "zimbraDomainStatus": ["active"], "zimbraDomainType": ["local"], "zimbraMailStatus": ["enabled"],
         "zimbraDomainDefaultCOSId": [default_cos], "o": [f"{name} domain"], "dc": [name.split(".")[0]],
         "objectClass": ["dcObject", "organization", "zimbraDomain", "amavisAccount"],
         "zimbraCreateTimestamp": [CREATED]}
    e.update(extra or {})
    return e


def account(name, n, display, cos_id, extra):
    local = name.split("@")[0]
    e = {"objectClass": ["inetOrgPerson", "zimbraAccount", "amavisAccount"], "zimbraId": [acct_id(n)],
         "mail": [name], "uid": [local], "zimbraMailDeliveryAddress": [name], "cn": [display or local],
         "sn": [local], "userPassword": [ssha512(name, f"Rahasia-{n}!")], "zimbraAccountStatus": ["active"],
         "zimbraMailStatus": ["enabled"], "zimbraCreateTimestamp": [CREATED], "zimbraMailHost": [HOST],
         "zimbraMailTransport": [TRANSPORT], "zimbraPasswordModifiedTime": [CREATED],
         "zimbraPrefTimeZoneId": ["Asia/Jakarta"]}
    if display:
        e["displayName"] = [display]
    if cos_id:
        e["zimbraCOSId"] = [cos_id]
    e.update(extra)
    return e


def build():
    d = {
        "servers": {HOST: server()},
        "cos": {
            "default": cos("default", DEFAULT_COS, "The default COS", "0"),
            "defaultExternal": cos("defaultExternal", DEFAULT_EXTERNAL_COS, "The default external users COS", "0",
                                   {"zimbraFeatureMailEnabled": ["FALSE"]}),
            "pegawai": cos("pegawai", PEGAWAI_COS, "Pegawai DJKI", "2147483648"),
            "pimpinan": cos("pimpinan", PIMPINAN_COS, "Pimpinan DJKI dan DGIP", "10737418240"),
        },
        "domains": {
            "djki.go.id": domain("djki.go.id", DJKI_ID, "Direktorat Jenderal Kekayaan Intelektual", PEGAWAI_COS,
                                 {"zimbraGalAccountId": [acct_id(ACCOUNTS[GALSYNC][0])]}),
            "dgip.go.id": domain("dgip.go.id", DGIP_ID, "Directorate General of Intellectual Property", PIMPINAN_COS,
                                 {"zimbraGalAccountId": [acct_id(ACCOUNTS[GALSYNC_DGIP][0])]}),
        },
        "accounts": {}, "lists": {}, "signatures": {}, "identities": {},
    }
    for name, (n, display, cos_id, extra, _) in ACCOUNTS.items():
        d["accounts"][name] = account(name, n, display, cos_id, extra)
    for name, aliases in ALIASES.items():
        d["accounts"][name]["zimbraMailAlias"] = list(aliases)
        d["accounts"][name]["mail"] += aliases
    for name, script in SIEVE.items():
        d["accounts"][name]["zimbraMailSieveScript"] = [script]
    for name, (sig_name, sig_id, text) in OWN_SIGNATURE.items():
        d["accounts"][name].update({"zimbraSignatureName": [sig_name], "zimbraSignatureId": [sig_id],
                                    "zimbraPrefMailSignature": [text], "zimbraPrefDefaultSignatureId": [sig_id]})
    for name, sigs in SIGNATURES.items():
        d["signatures"][name] = [{"zimbraSignatureName": [s], "zimbraSignatureId": [i], "zimbraPrefMailSignature": [t],
                                  "objectClass": ["zimbraSignature"], "zimbraCreateTimestamp": [CREATED]} for s, i, t in sigs]
    for name, ids in IDENTITIES.items():
        d["identities"][name] = [{"zimbraPrefIdentityName": [s], "zimbraPrefIdentityId": [i], "zimbraPrefFromAddress": [a],
                                  "zimbraPrefFromDisplay": [disp], "objectClass": ["zimbraIdentity"],
                                  "zimbraCreateTimestamp": [CREATED]}
                                 for s, i, a, disp in ids]
    for name, (zid, display, aliases, members) in LISTS.items():
        local = name.split("@")[0]
        d["lists"][name] = {
            "zimbraId": [zid], "mail": [name] + aliases, "zimbraMailAlias": [name] + aliases, "uid": [local],
            "displayName": [display], "cn": [display], "zimbraMailStatus": ["enabled"], "zimbraMailHost": [HOST],
            "zimbraCreateTimestamp": [CREATED], "objectClass": ["zimbraDistributionList", "zimbraMailRecipient"],
            "zimbraMailForwardingAddress": list(members)}
    return d


def write_in_place(path, text):
    """Rewritten, not replaced: the file keeps its owner (the zimbra user's, for zmprov)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def empty_store(store):
    os.makedirs(store, exist_ok=True)
    for e in os.listdir(store):
        p = os.path.join(store, e)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)


def give_to_store_owner(store):
    """New folders and files get SIM/store's owner (when run as root)."""
    if os.geteuid() != 0:
        return
    st = os.stat(store)
    for root, dirs, files in os.walk(store):
        for x in dirs + files:
            os.chown(os.path.join(root, x), st.st_uid, st.st_gid)


def message(name, n, folder, display):
    subject = {"": f"Laporan kegiatan {n}/2025", ".Sent": f"Re: Undangan rapat {n}",
               ".Arsip": f"Surat dinas nomor {n}/DJKI/2025"}.get(folder, f"Pesan {n}")
    return (f"From: Pengirim {n} <pengirim{n}@djki.go.id>\r\nTo: {display or name} <{name}>\r\n"
            f"Subject: {subject}\r\nDate: Mon, {n % 28 + 1:02d} Dec 2025 09:{n % 60:02d}:00 +0700\r\n"
            f"Message-ID: <{n}.{hashlib.sha1(name.encode()).hexdigest()[:12]}@{HOST}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Isi pesan {n} untuk {display or name}.\r\nTerima kasih.\r\n").encode()


def fill_store(store):
    for name, (_, display, _, _, folders) in ACCOUNTS.items():
        maildir = os.path.join(store, store_dir(name), "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        n = 0
        for folder, count in folders.items():
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(maildir, folder, sub), exist_ok=True)
            for i in range(count):
                n += 1
                seen = i % 3 != 2
                path = os.path.join(maildir, folder, "cur" if seen else "new",
                                    f"{1764550000 + 600 * n}.M{n}P1.sim:2,{'S' if seen else ''}")
                with open(path, "wb") as f:
                    f.write(message(name, n, folder, display))
                os.utime(path, (1764550000 + 600 * n,) * 2)


def main():
    d = build()
    write_in_place(os.path.join(SIM, "directory.json"), json.dumps(d, indent=1, sort_keys=True))
    write_in_place(os.path.join(SIM, "accounts"), "".join(f"{name}\tok\n" for name in ACCOUNTS))
    store = os.path.join(SIM, "store")
    empty_store(store)
    fill_store(store)
    give_to_store_owner(store)


if __name__ == "__main__":
    main()
