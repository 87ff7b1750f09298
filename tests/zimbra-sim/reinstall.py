#!/usr/bin/env python3
"""Usage: reinstall.py SIM [--new-cos-ids]. Makes the simulator SIM a freshly installed Zimbra,
as zmsetup leaves it: replaces SIM/directory.json, SIM/accounts and everything in SIM/store (the
files rewritten in place, so their owner stays; new folders get SIM/store's owner).

- The server mail.djki.go.id (localconfig zimbra_server_hostname) with a new zimbraId.
- The classes of service default and defaultExternal, zimbraMailHostPool = the new server (as
  zmsetup sets it). Their ids are the ones every install's LDIF gives them
  (AttributeManagerUtil.generateDefaultCOSLdif: e00428a1-0c00-11d9-836a-000d93afea2a,
  generateDefaultExternalCOSLdif: f27456a8-0c00-11d9-280a-286d93afea2g), the same as on the old
  server; --new-cos-ids gives them new ids instead (a stricter test of mapping by name).
- The domain djki.go.id only: a new zimbraId, no zimbraDomainDefaultCOSId, its own new GAL sync
  account galsync.xyz789@djki.go.id (zimbraGalAccountId).
- The accounts admin@djki.go.id (a new id and password hash) and that GAL sync account, with
  empty mailboxes; no lists, signatures or identities. SIM/accounts: those two, behaviour ok.
Prints nothing when it succeeds."""
import base64
import hashlib
import json
import os
import shutil
import sys
import time
import uuid

sys.dont_write_bytecode = True  # nothing written beside the sources
from simlib import localconfig, store_dir  # noqa: E402

SIM = sys.argv[1]
NEW_COS_IDS = "--new-cos-ids" in sys.argv[2:]


def ssha512(password):
    """Zimbra's {SSHA512} with a random salt (a new install, a new hash)."""
    salt = os.urandom(8)
    return "{SSHA512}" + base64.b64encode(hashlib.sha512(password.encode() + salt).digest() + salt).decode()


HOST = localconfig(SIM, "zimbra_server_hostname", "mail.djki.go.id")
NOW = time.strftime("%Y%m%d%H%M%SZ", time.gmtime())
SERVER_ID = str(uuid.uuid4())
DEFAULT_COS = str(uuid.uuid4()) if NEW_COS_IDS else "e00428a1-0c00-11d9-836a-000d93afea2a"
DEFAULT_EXTERNAL_COS = str(uuid.uuid4()) if NEW_COS_IDS else "f27456a8-0c00-11d9-280a-286d93afea2g"
SERVICES = ["amavis", "antispam", "antivirus", "opendkim", "dnscache", "ldap", "logger", "mailbox", "memcached",
            "mta", "proxy", "service", "snmp", "spell", "stats", "zimbra", "zimbraAdmin", "zimlet"]
ADMIN = "admin@djki.go.id"
GALSYNC = "galsync.xyz789@djki.go.id"


def account(name, zid, display, extra):
    local = name.split("@")[0]
    e = {"objectClass": ["inetOrgPerson", "zimbraAccount", "amavisAccount"], "zimbraId": [zid], "mail": [name],
         "uid": [local], "zimbraMailDeliveryAddress": [name], "cn": [display or local], "sn": [local],
         "zimbraAccountStatus": ["active"], "zimbraMailStatus": ["enabled"], "zimbraCreateTimestamp": [NOW],
         "zimbraMailHost": [HOST], "zimbraMailTransport": [f"lmtp:{HOST}:7025"], "zimbraPasswordModifiedTime": [NOW]}
    if display:
        e["displayName"] = [display]
    e.update(extra)
    return e


def build():
    admin_id, galsync_id = str(uuid.uuid4()), str(uuid.uuid4())
    pool = {"zimbraMailHostPool": [SERVER_ID]}
    return {
        "servers": {HOST: {
            "cn": [HOST], "zimbraId": [SERVER_ID], "zimbraServiceHostname": [HOST], "objectClass": ["zimbraServer"],
            "zimbraServerVersion": ["10.1.9_GA_4200"], "zimbraCreateTimestamp": [NOW],
            "zimbraServiceInstalled": list(SERVICES), "zimbraServiceEnabled": list(SERVICES),
            "zimbraSSLPrivateKey": ["-----BEGIN PRIVATE KEY-----\nTkVXIFNFUlZFUiBLRVk=\n-----END PRIVATE KEY-----"]}},
        "cos": {
            "default": dict({"cn": ["default"], "zimbraId": [DEFAULT_COS], "description": ["The default COS"],
                             "objectClass": ["zimbraCOS"], "zimbraMailQuota": ["0"]}, **pool),
            "defaultExternal": dict({"cn": ["defaultExternal"], "zimbraId": [DEFAULT_EXTERNAL_COS],
                                     "description": ["The default external users COS"], "objectClass": ["zimbraCOS"],
                                     "zimbraMailQuota": ["0"], "zimbraFeatureMailEnabled": ["FALSE"]}, **pool),
        },
        "domains": {"djki.go.id": {
            "zimbraDomainName": ["djki.go.id"], "zimbraId": [str(uuid.uuid4())], "zimbraDomainStatus": ["active"],
            "zimbraDomainType": ["local"], "zimbraMailStatus": ["enabled"], "o": ["djki.go.id domain"],
            "dc": ["djki"], "objectClass": ["dcObject", "organization", "zimbraDomain", "amavisAccount"],
            "zimbraCreateTimestamp": [NOW], "zimbraGalAccountId": [galsync_id]}},
        "accounts": {
            ADMIN: account(ADMIN, admin_id, None, {"zimbraIsAdminAccount": ["TRUE"],
                                                   "userPassword": [ssha512("Baru-" + admin_id[:8])]}),
            GALSYNC: account(GALSYNC, galsync_id, None, {
                "zimbraIsSystemResource": ["TRUE"], "zimbraIsSystemAccount": ["TRUE"], "zimbraHideInGal": ["TRUE"],
                "zimbraContactMaxNumEntries": ["0"]}),
        },
        "lists": {}, "signatures": {}, "identities": {},
    }


def write_in_place(path, text):
    """Rewritten, not replaced: the file keeps its owner (the zimbra user's, for zmprov)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    d = build()
    write_in_place(os.path.join(SIM, "directory.json"), json.dumps(d, indent=1, sort_keys=True))
    write_in_place(os.path.join(SIM, "accounts"), "".join(f"{name}\tok\n" for name in d["accounts"]))
    store = os.path.join(SIM, "store")
    os.makedirs(store, exist_ok=True)
    for e in os.listdir(store):
        p = os.path.join(store, e)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    for name in d["accounts"]:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(store, store_dir(name), "Maildir", sub), exist_ok=True)
    if os.geteuid() == 0:
        st = os.stat(store)
        for root, dirs, files in os.walk(store):
            for x in dirs + files:
                os.chown(os.path.join(root, x), st.st_uid, st.st_gid)


if __name__ == "__main__":
    main()
