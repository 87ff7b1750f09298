#!/usr/bin/env python3
"""Simulated Zimbra admin HTTPS endpoint on 127.0.0.1 (the mailboxd admin port, 7071 on a real
server). Usage: server.py SIMDIR (reads SIMDIR/localconfig, accounts, directory.json, store/,
cert.pem, key.pem).

Served, as zm-mailbox (develop 2b7f9787c6) does it (ArchiveFormatter = store/src/java/com/zimbra/
cs/service/formatter/ArchiveFormatter.java, AF below; Formatter.java = F):
- POST /service/admin/soap/: AuthRequest (urn:zimbraAdmin); GetFolderRequest (urn:zimbraMail)
  acting as an account; GetAccountInfoRequest and DeleteMailboxRequest (urn:zimbraAdmin).
- GET /home/ACCOUNT/?fmt=tgz: the account's export, streamed as a gzip'd tar in AF's layout.
- POST /home/ACCOUNT?fmt=tgz: AF.saveCallback's import (resolve=skip), with `callback=`.
- Both also as UserServletContext allows them by id: /home/~/?fmt=tgz&id=ACCOUNTID:1 and
  POST /home/~?fmt=tgz&...&id=ACCOUNTID:1 (ItemId "account:item", item 1 = USER_ROOT, the whole
  mailbox). The path is decoded (Jetty) before it is split at its first "/" after /home/
  (parseParams), so a name holding "/" cannot be named in the path: /home/a%2Fb@d/ asks for "a".

The account a request reaches is in SIMDIR/accounts (its behaviour, see make_fixtures.py); its
id and aliases in SIMDIR/directory.json. The mail store is a Maildir per account
(SIMDIR/store/DIR/Maildir, DIR = store_dir(ACCOUNT): the name as is): Inbox is the top,
every other folder a Maildir++ `.A.B` folder for the Zimbra path A/B, a `.` or `%` inside a
folder's name written `%2E` / `%25` (so "Laporan 2026.01" stays one folder). A mailbox is made
when it is first reached (MailboxManager.getMailboxByAccount, FetchMode.AUTOCREATE) and
DeleteMailboxRequest removes it."""
import base64
import hashlib
import http.server
import io
import json
import os
import re
import secrets
import shutil
import ssl
import sys
import tarfile
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

SIM = sys.argv[1]
LOG_LOCK = threading.Lock()
STORE_LOCK = threading.Lock()
TOKENS = set()
# AF.ILLEGAL_FILE_CHARS (a message's entry name) and AF.ILLEGAL_FOLDER_CHARS (its folder part:
# "/" stays the hierarchy separator).
ILLEGAL_FILE_CHARS = re.compile(r'[/:*?"<>|\x00]')
ILLEGAL_FOLDER_CHARS = re.compile(r'[:*?"<>|\x00]')
# F.ALLOWED_CALLBACK_CHARS
ALLOWED_CALLBACK_CHARS = re.compile(r"[a-zA-Z0-9_.-]+")
# MailItem.Type bytes (also the tar entries' major device id, TarArchiveOutputStream).
TYPE_FOLDER, TYPE_MESSAGE = 1, 5
# Metadata.LEGACY_METADATA_VERSION: the "Ver" of ItemData's JSON.
META_VERSION = 10
# LC.zimbra_lmtp_max_line_length (zimbra_lmtp_validate_messages is true by default).
MAX_LINE_LENGTH = 10240
# Mailbox.ID_FOLDER_* of the system folders that hold mail (FolderConstants); user folders
# start at 257 (Mailbox.FIRST_USER_ID is 256).
SYSTEM_FOLDERS = {"Inbox": 2, "Trash": 3, "Junk": 4, "Sent": 5, "Drafts": 6, "Chats": 14}
# The other folders MB.createDefaultFolders makes in every mailbox; the simulator keeps no
# contacts, appointments, tasks or documents, so they are always empty.
OTHER_SYSTEM_FOLDERS = [("Contacts", 7, "contact"), ("Calendar", 10, "appointment"),
                        ("Emailed Contacts", 13, "contact"), ("Tasks", 15, "task"), ("Briefcase", 16, "document")]
# Maildir flag letter -> (Zimbra FlagStr letter, Flag.FlagInfo bitmask): REPLIED r 4, FORWARDED
# w 8, FLAGGED f 32, DRAFT d 64. Unread is 'u' (bitmask 512) when the Maildir file lacks S.
MAILDIR_FLAGS = {"R": ("r", 4), "P": ("w", 8), "F": ("f", 32), "D": ("d", 64)}
UNREAD = ("u", 512)
# Mailbox ids, given when a mailbox is first reached (DeleteMailboxRequest answers with one).
MAILBOX_IDS = {}
NEXT_MAILBOX_ID = [0]


def lc(key):
    with open(os.path.join(SIM, "localconfig")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" = ")
            if k == key:
                return v
    raise KeyError(key)


def accounts():
    with open(os.path.join(SIM, "accounts"), encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("\t") for line in f if line.strip())


def directory():
    with open(os.path.join(SIM, "directory.json"), encoding="utf-8") as f:
        return json.load(f)


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def log(line):
    with LOG_LOCK, open(os.path.join(SIM, "requests.log"), "a") as f:
        f.write(line + "\n")


def left_out(folder):
    """Trash (with its subfolders) and Junk: the export's `is:local` search leaves them out
    (ZimbraQuery.ensureSpamTrashSetting, the admin's zimbraPrefInclude{Trash,Spam}InSearch FALSE)."""
    return folder in ("Trash", "Junk") or folder.startswith("Trash/")


def maildir_dir(folder):
    """The Maildir++ directory of Zimbra folder path `folder` ("" for Inbox)."""
    if folder == "Inbox":
        return ""
    return "." + ".".join(p.replace("%", "%25").replace(".", "%2E") for p in folder.split("/"))


def folder_of_dir(name):
    """The Zimbra folder path of a Maildir++ directory name (".A.B" -> "A/B")."""
    return "/".join(re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), p) for p in name[1:].split("."))


def store_dir(name):
    """An account's folder under SIM/store: its name as is, a "/" in it making nested folders (as
    Path::join(name) finds them); a name with an empty, "." or ".." part (it would leave the
    store) has "%" and "/" written %25 and %2F instead. zmprov and the fixture scripts use the
    same mapping."""
    if any(p in ("", ".", "..") for p in name.split("/")):
        return name.replace("%", "%25").replace("/", "%2F")
    return name


def mailbox(account):
    """The account's Maildir, made (empty) when the mailbox does not exist yet."""
    maildir = os.path.join(SIM, "store", store_dir(account), "Maildir")
    with STORE_LOCK:
        if account not in MAILBOX_IDS or not os.path.isdir(maildir):
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(maildir, sub), exist_ok=True)
            NEXT_MAILBOX_ID[0] += 1
            MAILBOX_IDS[account] = NEXT_MAILBOX_ID[0]
    return maildir


def folders(maildir):
    """{Zimbra folder path: [message files]}, Inbox and every folder of the Maildir, parents
    that only hold folders included."""
    out = {"Inbox": []}
    for d in sorted(d for d in os.listdir(maildir) if d.startswith(".") and os.path.isdir(os.path.join(maildir, d))):
        name = folder_of_dir(d)
        parts = name.split("/")
        for i in range(1, len(parts)):
            out.setdefault("/".join(parts[:i]), [])
        out[name] = []
    for name in out:
        for part in ("cur", "new"):
            p = os.path.join(maildir, maildir_dir(name), part)
            if os.path.isdir(p):
                out[name] += [os.path.join(p, f) for f in sorted(os.listdir(p))]
    return out


def folder_ids(names):
    """Item ids of the folders: the system ones fixed, user folders from 257 in path order."""
    ids, next_id = {}, 257
    for name in sorted(names):
        if name in SYSTEM_FOLDERS:
            ids[name] = SYSTEM_FOLDERS[name]
        else:
            ids[name], next_id = next_id, next_id + 1
    return ids, next_id


def digest(data):
    """A blob's digest: SHA-256, base64 with '/' as ',' (BlobBuilder, ByteUtil.encodeFSSafeBase64)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode().replace("/", ",")


def header_value(raw, name):
    """The raw value of header `name` (bytes, folding kept) from a message's bytes."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    m = re.search(rb"(?im)^" + re.escape(name.encode()) + rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)", head)
    return m.group(1) if m else None


ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def decode_words(text):
    """RFC 2047 encoded words decoded, blanks between two of them dropped."""
    out, last = [], 0
    prev_end = None
    for m in ENCODED_WORD.finditer(text):
        between = text[last:m.start()]
        if not (prev_end is not None and between.strip(" \t") == ""):
            out.append(between)
        charset, kind, data = m.group(1).split("*")[0], m.group(2).upper(), m.group(3)
        try:
            if kind == "B":
                raw = base64.b64decode(data + "=" * (-len(data) % 4))
            else:
                raw = re.sub(rb"=([0-9A-Fa-f]{2})", lambda x: bytes([int(x.group(1), 16)]), data.replace("_", " ").encode())
            out.append(raw.decode(charset, errors="replace"))
        except (LookupError, ValueError):
            out.append(m.group(0))
        last = prev_end = m.end()
    out.append(text[last:])
    return "".join(out)


def subject_of(raw):
    """Message.getSubject() of a message: the Subject header unfolded (CR and LF dropped), raw
    8-bit bytes read as UTF-8 and RFC 2047 words decoded (ZInternetHeader.decode), control
    characters but tab, CR, LF stripped (StringUtil.stripControlCharacters)."""
    value = header_value(raw, "Subject")
    if value is None:
        return ""
    value = value.lstrip(b" \t\r\n")  # the value starts after the colon's blanks
    text = decode_words(value.replace(b"\r", b"").replace(b"\n", b"").decode("utf-8", errors="replace"))
    return "".join(c for c in text if c >= " " or c in "\t")


def java_trim(s):
    """String.trim(): drops chars <= ' ' at both ends."""
    i, j = 0, len(s)
    while i < j and s[i] <= " ":
        i += 1
    while j > i and s[j - 1] <= " ":
        j -= 1
    return s[i:j]


def utf16_len(s):
    return len(s.encode("utf-16-le")) // 2


def utf16_cut(s, n):
    return s.encode("utf-16-le")[: 2 * n].decode("utf-16-le", errors="ignore")


def entry_name(item_id, subject, ext="eml"):
    # AF.getEntryName: id padded to 10, "-", the subject; "message-ID" when there is none; cut
    # at 120 UTF-16 units when longer than 121, illegal characters "_", trimmed, trailing dots
    # dropped.
    name = f"{item_id:010d}-{subject}" if subject else f"message-{item_id}"
    if utf16_len(name) > 121:
        name = utf16_cut(name, 120)
    name = java_trim(ILLEGAL_FILE_CHARS.sub("_", name))
    while name.endswith("."):
        name = java_trim(name[:-1])
    return name + "." + ext if ext else name


def flag_str(flags_text):
    """(FlagStr, flags bitmask, unread) of a Maildir file's flags."""
    letters, mask = "", 0
    for maildir_flag, (letter, bit) in MAILDIR_FLAGS.items():
        if maildir_flag in flags_text:
            letters, mask = letters + letter, mask | bit
    unread = "S" not in flags_text
    if unread:
        letters += UNREAD[0]
    return letters, mask, unread


def maildir_flags(flag_string):
    """The Maildir flags (sorted) of a FlagStr."""
    out = {m for m, (letter, _) in MAILDIR_FLAGS.items() if letter in flag_string}
    if UNREAD[0] not in flag_string:
        out.add("S")
    return "".join(sorted(out))


def item_meta(**fields):
    """ItemData.toJSON() (store/src/java/com/zimbra/cs/service/util/ItemData.java), in its order."""
    keys = ["id", "uuid", "type", "parent_id", "folder_id", "index_id", "imap_id", "date", "size", "volume_id",
            "blob_digest", "unread", "flags", "subject", "name", "metadata", "mod_metadata", "change_date",
            "mod_content", "sender", "ExtraStr", "FlagStr", "Path", "TagStr", "TagNames", "Ver"]
    base = {"index_id": 0, "volume_id": 0, "mod_metadata": 1, "change_date": 0, "mod_content": 1, "Ver": META_VERSION}
    base.update(fields)
    return json.dumps({k: base[k] for k in keys if k in base}, ensure_ascii=False).encode()


class ItemData:
    """new ItemData(String): the mandatory ints read with getInt (a missing or wrong one is a
    JSONException: the .meta is INVALID_FORMAT), the rest optional."""

    def __init__(self, data):
        j = json.loads(data.decode("utf-8"))
        if not isinstance(j, dict):
            raise ValueError("not an object")

        def get_int(k):
            v = j[k]
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise ValueError(k)
            return int(v)

        if get_int("Ver") > META_VERSION:
            raise ValueError("unsupported data version")
        self.id, self.type = get_int("id"), get_int("type")
        for k in ("parent_id", "folder_id", "imap_id", "unread", "flags", "mod_metadata", "change_date", "mod_content"):
            get_int(k)
        self.date, self.size = get_int("date"), get_int("size")
        self.digest = str(j.get("blob_digest") or "")
        self.flags = str(j.get("FlagStr") or "")
        self.path = str(j.get("Path") or "")


class CutAfter:
    """A writer that breaks the connection after `limit` bytes (the 'cut' behaviour)."""

    def __init__(self, raw, limit):
        self.raw, self.left = raw, limit

    def write(self, b):
        if self.left <= 0:
            raise ConnectionAbortedError("simulated: stream cut")
        b = bytes(b)[: self.left]
        self.left -= len(b)
        self.raw.write(b)
        return len(b)

    def flush(self):
        self.raw.flush()


class ZimbraTarInfo(tarfile.TarInfo):
    """A tar header as TarArchiveOutputStream writes it: the item's type byte as the major
    device id (tarfile leaves that field empty for a plain file)."""
    item_type = 0

    def tobuf(self, format=tarfile.DEFAULT_FORMAT, encoding=tarfile.ENCODING, errors="surrogateescape"):
        buf = bytearray(super().tobuf(format, encoding, errors))
        h = len(buf) - tarfile.BLOCKSIZE  # the entry's own header, after any GNU long-name blocks
        buf[h + 329:h + 337] = b"%07o\0" % self.item_type
        buf[h + 148:h + 156] = b" " * 8
        buf[h + 148:h + 155] = b"%06o\0" % sum(buf[h:h + tarfile.BLOCKSIZE])
        return bytes(buf)


class ImportFault(Exception):
    """A ServiceException: its code, its message and its arguments (name, type, value)."""

    def __init__(self, code, message, *args, receivers=False):
        super().__init__(message)
        self.code, self.message, self.args_, self.receivers = code, message, list(args), receivers

    def soap_js(self):
        # SoapJSProtocol.soapFault(ServiceException), as Element.JSONElement prints it.
        error = {"Code": self.code, "Trace": "qtp1-sim"}
        if self.args_:
            error["a"] = [{"n": n, "t": t, "_content": v} for n, t, v in self.args_]
        error["_jsns"] = "urn:zimbra"
        return json.dumps({"Code": {"Value": "soap:Receiver" if self.receivers else "soap:Sender"},
                           "Reason": {"Text": self.message}, "Detail": {"Error": error},
                           "_jsns": "urn:zimbraSoap"}, ensure_ascii=False, separators=(",", ":"))


def formatter_fault(code, message, path_name, path):
    return ImportFault(code, message, (path_name, "STR", path))


class QuotaExceeded(Exception):
    pass


def effective_quota(account):
    """AccountUtil.getEffectiveQuota: zimbraMailQuota of the account, else of its class of
    service (zimbraCOSId, else the domain's default, else "default"); 0 is no limit."""
    d = directory()
    a = d["accounts"].get(account, {})
    if a.get("zimbraMailQuota"):
        return int(a["zimbraMailQuota"][0])
    cos_id = (a.get("zimbraCOSId") or [None])[0]
    if cos_id is None:
        dom = d["domains"].get(account.rpartition("@")[2], {})
        cos_id = (dom.get("zimbraDomainDefaultCOSId") or [None])[0]
    for c in d["cos"].values():
        if cos_id in c.get("zimbraId", []):
            return int((c.get("zimbraMailQuota") or ["0"])[0])
    return int((d["cos"].get("default", {}).get("zimbraMailQuota") or ["0"])[0])


def store_size(account):
    used = 0
    for root, _, files in os.walk(os.path.join(SIM, "store", store_dir(account))):
        used += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return used


class Importer:
    """AF.saveCallback for a POST to /home/ACCOUNT (the target folder is USER_ROOT), messages
    and folders only. `errs` collects what AF hands to updateClient as warnings."""

    def __init__(self, account, maildir, resolve):
        self.account, self.maildir, self.resolve = account, maildir, resolve
        self.errs = []
        self.added = self.skipped = 0
        # FolderDigestInfo: each folder's digests, read once per request when the folder is
        # first looked up, never updated with what this request adds (so two copies of one
        # message in one folder of the archive are both imported into a folder without it).
        # The cache's bound (16 folders, expiring) is not imitated.
        self.digests = {}
        self.quota = effective_quota(account)
        self.used = store_size(account) if self.quota else 0

    def folder_dir(self, folder):
        sub = maildir_dir(folder)
        for part in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub, part), exist_ok=True)
        return os.path.join(self.maildir, sub)

    def run(self, tar):
        meta, item = False, None
        for aie in tar:
            if not aie.isfile() or aie.name.startswith("__MACOSX/"):
                continue
            if aie.name.endswith(".meta"):
                meta = True
                if item is not None:
                    self.add_item(item, None, None)
                try:
                    item = ItemData(tar.extractfile(aie).read())
                except (ValueError, KeyError, UnicodeDecodeError):
                    # AF: the error is recorded and `id` keeps what it held.
                    self.errs.append(formatter_fault("formatter.INVALID_FORMAT", "invalid file format", "filename", aie.name))
                continue
            if aie.name.endswith(".err"):
                self.errs.append(formatter_fault("formatter.MISMATCHED_SIZE", "ignored item data size mismatch", "path", aie.name))
            elif item is None:
                if meta:
                    self.errs.append(formatter_fault("formatter.MISSING_META", "item content missing meta information", "path", aie.name))
                else:
                    self.add_data(tar, aie)
            elif (aie.devmajor != 0 and item.type != aie.devmajor) or (item.digest and item.size != aie.size):
                self.errs.append(formatter_fault("formatter.MISMATCHED_META", "mismatched item content and meta", "path", aie.name))
            else:
                self.add_item(item, tar, aie)
            item = None
        if item is not None:
            self.add_item(item, None, None)

    def add_item(self, item, tar, aie):
        """AF.addItem: the folder by the .meta's Path (made with its parents when missing)."""
        path = item.path
        if path.endswith("/") and path != "/":
            path = path[:-1]
        folder = path.lstrip("/")
        try:
            if item.type == TYPE_FOLDER:
                if folder and folder not in SYSTEM_FOLDERS:
                    self.folder_dir(folder)
                return
            if item.type != TYPE_MESSAGE:
                return  # contacts, appointments, tags, ...: not simulated
            if aie is None:
                if item.digest:
                    self.errs.append(formatter_fault("formatter.MISSING_BLOB", "missing item blob for meta", "path", item.path))
                return
            if not folder:
                raise ImportFault("service.FAILURE", "system failure: simulator: a message outside any folder")
            data = tar.extractfile(aie).read()
            where = self.folder_dir(folder)
            known = self.digests.get(folder)
            if known is None:
                known = self.digests[folder] = set()
                for part in ("cur", "new"):
                    for f in os.listdir(os.path.join(where, part)):
                        with open(os.path.join(where, part, f), "rb") as fh:
                            known.add(digest(fh.read()))
            if item.digest and item.digest in known:
                self.skipped += 1  # "Message with id=%s has same digest='%s' - not re-adding"
                return
            self.add_message(where, data, item.date, maildir_flags(item.flags))
        except QuotaExceeded:
            # addItem rethrows QUOTA_EXCEEDED; the entry loop's catch ends the import there
            # with a warning (AF 989-995).
            raise
        except ImportFault as e:
            # FormatterServiceException.UNKNOWN_ERROR(path, e) of a ServiceException keeps its
            # code, message and arguments (WRAPPED_EXCEPTION): the path is not added.
            self.errs.append(e)

    def add_data(self, tar, aie):
        """AF.addData: an archive without .meta entries; an .eml goes into the folder of its
        entry's directory as it is written (no "!N" taken off), Inbox at the top; unread when
        the entry's mode lacks 0200; received at the entry's time; nothing skipped."""
        if not aie.name.endswith(".eml"):
            return
        folder = aie.name.rsplit("/", 1)[0] if "/" in aie.name else "Inbox"
        try:
            data = tar.extractfile(aie).read()
            self.add_message(self.folder_dir(folder), data, int(aie.mtime), "" if not aie.mode & 0o200 else "S")
        except ImportFault as e:
            self.errs.append(e)

    def add_message(self, where, data, date, flags):
        """Mailbox.addMessage: a line longer than zimbra_lmtp_max_line_length makes the message
        invalid (Rfc822ValidationInputStream); the quota is checked (checkSizeChange)."""
        if any(len(line) > MAX_LINE_LENGTH for line in re.split(rb"[\r\n]", data)):
            raise ImportFault("service.INVALID_REQUEST", "invalid request: Message content is invalid.")
        if self.quota and self.used + len(data) > self.quota:
            raise QuotaExceeded(self.quota)
        name = f"{int(time.time())}.M{secrets.token_hex(6)}P{os.getpid()}.sim:2,{flags}"
        target = os.path.join(where, "cur", name)
        with open(os.path.join(where, "tmp", name), "wb") as f:
            f.write(data)
        os.rename(os.path.join(where, "tmp", name), target)
        os.utime(target, (date, date))
        self.used += len(data)
        self.added += 1


def is_uuid(value):
    """StringUtil.isUUID."""
    return len(value) == 36 and all(value[i] == "-" for i in (8, 13, 18, 23))


def account_by_name(name):
    """Provisioning.get(AccountBy.name): LdapProvisioning.getAccountByName's filter matches
    zimbraMailDeliveryAddress, zimbraMailAlias or zimbraOldMailAddress, case-insensitively. The
    name of the account (as SIMDIR/accounts has it), or None."""
    name = name.lower()
    served = accounts()
    for n in served:
        if n.lower() == name:
            return n
    for n, a in directory().get("accounts", {}).items():
        addrs = [n] + a.get("zimbraMailDeliveryAddress", []) + a.get("zimbraMailAlias", []) + a.get("zimbraOldMailAddress", [])
        if name in (x.lower() for x in addrs):
            return n
    return None


def account_by_id(zimbra_id):
    """Provisioning.get(AccountBy.id)."""
    for n, a in directory().get("accounts", {}).items():
        if zimbra_id in a.get("zimbraId", []):
            return n
    return None


def item_id(encoded):
    """ItemIdentifier(encoded, null): (account id or None, item id, subpart or -1); ValueError
    for a malformed one (UserServletContext answers 400 errInvalidId)."""
    if encoded == "":
        raise ValueError("empty/missing item ID")
    delimiter = encoded.find(":")
    if delimiter == 0 or delimiter == len(encoded) - 1:
        raise ValueError("malformed item ID")
    account = encoded[:delimiter] if delimiter != -1 else None
    encoded = encoded[delimiter + 1:]
    part = encoded.find("-")
    if part == len(encoded) - 1:
        raise ValueError("malformed item ID")
    subpart = -1
    if part > 0:
        subpart = java_int(encoded[part + 1:])
        if subpart < 0:
            raise ValueError("malformed item ID")
        encoded = encoded[:part]
    return account, java_int(encoded), subpart


def java_int(text):
    """Integer.parseInt."""
    if not re.fullmatch(r"[+-]?[0-9]+", text) or not -2 ** 31 <= int(text) < 2 ** 31:
        raise ValueError(text)
    return int(text)


class UserPath:
    """UserServletContext.parseParams over the path Jetty decoded (getPathInfo): the account
    part up to the first "/" after /home/, lowercased; the item path after it ("/" when none);
    `id`. `error` is set (an HTTP status, a message) when the request is refused there."""

    def __init__(self, raw):
        parts = urllib.parse.urlsplit(raw)
        self.query = parts.query
        self.params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.error = None
        self.account_path = self.item_path = None
        self.item = None
        try:
            path = urllib.parse.unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            self.error = (400, "Bad Request")  # Jetty: the path is not UTF-8
            return
        if not path.startswith("/home/"):
            self.error = (404, "Not Found")
            return
        info = path[len("/home"):]
        if info in ("", "/"):
            self.error = (400, "invalid path")  # MsgKey.errInvalidPath
            return
        pos = info.find("/", 1)
        if pos == -1:
            pos = len(info)
        self.account_path = info[1:pos].lower()
        self.item_path = info[pos + 1:] if pos < len(info) else "/"
        if self.item_path == "":
            self.item_path = "/"
        ids = self.params.get("id")
        if ids is not None:
            try:
                self.item = item_id(ids[0])
            except ValueError:
                self.error = (400, "invalid id")  # MsgKey.errInvalidId

    def target(self):
        """The target account's name (as SIMDIR/accounts has it), or None: by the id's account
        when `id` names one, else "~" (the authenticated admin: the simulated admin has no
        mailbox), else by the path's name ("~name" as "name")."""
        if self.item is not None and self.item[0] is not None:
            name = account_by_id(self.item[0])
        elif self.account_path == "~":
            return None
        else:
            name = account_by_name(self.account_path[1:] if self.account_path.startswith("~") else self.account_path)
        return name if name in accounts() else None

    def whole_mailbox(self):
        """Whether the item asked for is USER_ROOT (item 1, or the path "/"): what is simulated."""
        if self.item is not None:
            return self.item[1] == 1 and self.item[2] == -1
        return self.item_path == "/"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes, as a chunked stream would
    server_version = "SimZimbra"

    def log_message(self, fmt, *args):
        pass

    def page(self, code, text, ctype="text/html;charset=utf-8"):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def jetty_error(self, code, message):
        # The shape of the error page mailboxd's Jetty sends.
        self.page(code, f"<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n"
                        f"<title>Error {code} {message}</title>\n</head>\n<body><h2>HTTP ERROR {code}</h2>\n"
                        f"<p>Problem accessing {self.path}. Reason:\n<pre>    {message}</pre></p>\n</body>\n</html>\n")

    def soap(self, body):
        self.page(200, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>'
                       f'<context xmlns="urn:zimbra"/></soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>',
                  "application/soap+xml; charset=utf-8")

    def authorised(self):
        cookies = dict(
            c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c
        )
        return cookies.get("ZM_ADMIN_AUTH_TOKEN") in TOKENS

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path.startswith("/home/"):
            return self.import_tgz(UserPath(self.path))
        if self.path not in ("/service/admin/soap", "/service/admin/soap/"):
            log(f"POST {self.path} 404")
            return self.jetty_error(404, "Not Found")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            root = ET.fromstring(body)
        except Exception as e:  # noqa: BLE001 - any malformed request is a client fault
            log(f"POST {self.path} 500 malformed")
            return self.fault("service.PARSE_ERROR", f"parse error: {e}")
        if root.find(".//{urn:zimbraMail}GetFolderRequest") is not None:
            return self.get_folder(root)
        for name, handler in (("GetAccountInfoRequest", self.get_account_info), ("DeleteMailboxRequest", self.delete_mailbox)):
            req = root.find(f".//{{urn:zimbraAdmin}}{name}")
            if req is not None:
                if self.admin_token(root) not in TOKENS:
                    log(f"POST {name} 500 auth")
                    return self.fault("service.AUTH_REQUIRED", "no valid authtoken present")
                return handler(req)
        try:
            req = root.find(".//{urn:zimbraAdmin}AuthRequest")
            name = req.find("{urn:zimbraAdmin}name").text or ""
            password = req.find("{urn:zimbraAdmin}password").text or ""
        except Exception as e:  # noqa: BLE001 - any malformed request is a client fault
            log(f"POST {self.path} 500 malformed")
            return self.fault("service.PARSE_ERROR", f"parse error: {e}")
        if name != lc("zimbra_ldap_user") or password != lc("zimbra_ldap_password"):
            log(f"POST {self.path} 500 auth-failed")
            return self.fault("account.AUTH_FAILED", f"authentication failed for [{name}]")
        token = "0_" + secrets.token_hex(40)
        TOKENS.add(token)
        log(f"POST {self.path} 200 AuthRequest")
        self.soap(f'<AuthResponse xmlns="urn:zimbraAdmin"><authToken>{token}</authToken><lifetime>43199998</lifetime></AuthResponse>')

    @staticmethod
    def admin_token(root):
        ctx = root.find(".//{urn:zimbra}context")
        return ctx.findtext("{urn:zimbra}authToken") if ctx is not None else None

    def get_account_info(self, req):
        """GetAccountInfoRequest (service/admin/GetAccountInfo.java): <account by="name|id">;
        answers <name>, <a n="zimbraId">, <a n="zimbraMailHost">, <cos>; an account not in the
        directory is account.NO_SUCH_ACCOUNT (defendAgainstAccountOrCalendarResourceHarvesting,
        as a global admin sees it)."""
        sel = req.find("{urn:zimbraAdmin}account")
        key, by = (sel.text or "", sel.get("by", "name")) if sel is not None else ("", "name")
        d = directory()
        found = None
        # Provisioning.get(AccountBy): by id, or by name (also an alias), case-insensitively; a
        # name in the XML may hold any character ("/", quotes, "$").
        for name, attrs in d["accounts"].items():
            addrs = [name] + attrs.get("zimbraMailAlias", []) + attrs.get("zimbraOldMailAddress", [])
            if (by == "name" and key.lower() in (x.lower() for x in addrs)) or (by == "id" and key in attrs.get("zimbraId", [])):
                found = (name, attrs)
                break
        if found is None:
            log(f"POST GetAccountInfo {key} 500 no-such-account")
            return self.fault("account.NO_SUCH_ACCOUNT", f"no such account: {key}")
        name, attrs = found
        log(f"POST GetAccountInfo {name} 200")
        cos_id = (attrs.get("zimbraCOSId") or d["domains"].get(name.rpartition("@")[2], {}).get("zimbraDomainDefaultCOSId") or [""])[0]
        cos = [(n, c) for n, c in d["cos"].items() if cos_id in c.get("zimbraId", [])] or [("default", d["cos"].get("default", {}))]
        host = (attrs.get("zimbraMailHost") or [lc("zimbra_server_hostname")])[0]
        self.soap('<GetAccountInfoResponse xmlns="urn:zimbraAdmin">'
                  f'<name>{xml_escape(name)}</name><a n="zimbraId">{xml_escape(attrs["zimbraId"][0])}</a>'
                  f'<a n="zimbraMailHost">{xml_escape(host)}</a>'
                  f'<cos id="{xml_escape((cos[0][1].get("zimbraId") or [""])[0])}" name="{xml_escape(cos[0][0])}"/>'
                  f'<adminSoapURL>https://{xml_escape(host)}:{lc("zimbra_admin_service_port")}/service/admin/soap/</adminSoapURL>'
                  '</GetAccountInfoResponse>')

    def delete_mailbox(self, req):
        """DeleteMailboxRequest (service/admin/DeleteMailbox.java): <mbox id="ZIMBRAID"/>. The
        account's mailbox, every item of it, goes (Mailbox.deleteMailbox); the account stays, and
        the next access makes a new, empty mailbox. Answers <mbox mbxid="N"/>, without it when
        there was no mailbox (an unknown id included: the global admin's deletion goes on)."""
        mbox = req.find("{urn:zimbraAdmin}mbox")
        if mbox is None or not mbox.get("id"):
            log("POST DeleteMailbox 500 invalid")
            return self.fault("service.INVALID_REQUEST", "invalid request: missing required attribute: id")
        zimbra_id = mbox.get("id")
        name = next((n for n, a in directory()["accounts"].items() if zimbra_id in a.get("zimbraId", [])), None)
        mbxid = None
        if name is not None:
            maildir = os.path.join(SIM, "store", store_dir(name), "Maildir")
            with STORE_LOCK:
                if os.path.isdir(maildir):
                    mbxid = MAILBOX_IDS.pop(name, None)
                    if mbxid is None:
                        NEXT_MAILBOX_ID[0] += 1
                        mbxid = NEXT_MAILBOX_ID[0]
                    shutil.rmtree(maildir)
        log(f"POST DeleteMailbox {name or zimbra_id} 200 mbxid={mbxid}")
        inner = f'<mbox mbxid="{mbxid}"/>' if mbxid is not None else ""
        self.soap(f'<DeleteMailboxResponse xmlns="urn:zimbraAdmin">{inner}</DeleteMailboxResponse>')

    def get_folder(self, root):
        """GetFolderRequest (urn:zimbraMail) on the admin port, acting as the account named in the
        context (ZimbraSoapContext: an admin token may; an account in maintenance is refused).
        Answers the folder tree from USER_ROOT with each folder's `n` (its own items, not its
        subfolders'), as ToXML.encodeFolder does; Trash is id 3 with no view, Junk id 4; the
        contact, calendar, task and briefcase folders of every mailbox, empty."""
        ctx = root.find(".//{urn:zimbra}context")
        token = ctx.findtext("{urn:zimbra}authToken") if ctx is not None else None
        target = ctx.find("{urn:zimbra}account") if ctx is not None else None
        if token not in TOKENS:
            log("POST GetFolder 500 auth")
            return self.fault("service.AUTH_REQUIRED", "no valid authtoken present")
        account = target.text if target is not None and target.get("by") == "name" else None
        behaviour = accounts().get(account or "")
        if behaviour is None:
            log(f"POST GetFolder {account} 500 no-such-account")
            return self.fault("account.NO_SUCH_ACCOUNT", f"no such account: {account}")
        if behaviour == "maintenance":
            log(f"POST GetFolder {account} 500 maintenance")
            return self.fault("account.ACCOUNT_INACTIVE", f"account is not active: {account}")
        boxes = folders(mailbox(account))
        for name in ("Inbox", "Trash", "Junk", "Sent", "Drafts"):
            boxes.setdefault(name, [])
        log(f"POST GetFolder {account} 200 n={sum(len(f) for f in boxes.values())}")
        ids, _ = folder_ids(boxes)

        def encode(path):
            name = path.rsplit("/", 1)[-1]
            view = "" if path == "Trash" else ' view="message"'
            parent = ids.get(path.rsplit("/", 1)[0], 1) if "/" in path else 1
            inner = "".join(encode(c) for c in sorted(boxes) if c.rsplit("/", 1)[0] == path and "/" in c)
            return (f'<folder i4ms="1" absFolderPath="/{xml_escape(path)}" id="{ids[path]}" name="{xml_escape(name)}"'
                    f' l="{parent}"{view} n="{len(boxes[path])}" s="{sum(os.path.getsize(f) for f in boxes[path])}" rev="1">{inner}</folder>')

        tops = "".join(encode(p) for p in sorted(boxes) if "/" not in p)
        others = "".join(f'<folder id="{i}" name="{n}" absFolderPath="/{n}" l="1" view="{v}" n="0" s="0"/>'
                         for n, i, v in OTHER_SYSTEM_FOLDERS)
        self.soap('<GetFolderResponse xmlns="urn:zimbraMail">'
                  f'<folder id="1" name="USER_ROOT" absFolderPath="/" l="11" n="0" s="0">{tops}{others}'
                  '<search id="301" name="Belum dibaca" absFolderPath="/Belum dibaca" l="1" query="is:unread"/>'
                  '</folder></GetFolderResponse>')

    def import_tgz(self, where):
        """POST /home/ACCOUNT?fmt=tgz[&resolve=skip][&callback=NAME] (or /home/~?...&id=ID:1):
        AF.saveCallback into USER_ROOT, see Importer. The answer is F.updateClient's: without `callback`, 200 and an
        empty body whatever items failed, a failure outside the item loop (a body that is not a
        gzip'd tar, a bad `resolve`) HTTP 500; with `callback`, an HTML page calling
        window.parent.NAME('success'|'warn'|'fail', <the faults in SoapJS>)."""
        query = where.query
        account = where.account_path
        params = {k: v[0] for k, v in where.params.items()}
        # Read whole first, whatever the answer: a client still sending would see a reset.
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if where.error is not None:
            log(f"POST {self.path} {where.error[0]}")
            return self.jetty_error(*where.error)
        if params.get("fmt") != "tgz":
            log(f"POST {account} 400 {query}")
            return self.jetty_error(400, f"simulator: only fmt=tgz is served, not {query}")
        callback = params.get("callback") or None
        if callback is not None and not ALLOWED_CALLBACK_CHARS.fullmatch(callback):
            log(f"POST {account} 400 invalid callback")
            return self.jetty_error(400, "invalid callback")  # F.validateParams
        resolve = params.get("resolve")
        if resolve is not None and resolve.lower() in ("modify", "replace", "reset"):
            log(f"POST {account} 400 {query}")
            return self.jetty_error(400, f"simulator: resolve={resolve} is not simulated")
        if params.get("types") not in (None, "", "message"):
            log(f"POST {account} 400 {query}")
            return self.jetty_error(400, f"simulator: types={params['types']} is not simulated")
        if not self.authorised():
            log(f"POST {account} 401")
            return self.jetty_error(401, "must authenticate")
        target = where.target()
        if target is None:
            # No such account (or the admin's "~"): no mailbox, PERM_DENIED, sent as 404.
            log(f"POST {account} 404")
            return self.jetty_error(404, "no such item")
        account = target
        behaviour = accounts()[account]
        if behaviour == "maintenance":
            log(f"POST {account} 404 maintenance")
            return self.jetty_error(404, "account is in maintenance mode")
        if not where.whole_mailbox():
            log(f"POST {account} 400 {self.path}")
            return self.jetty_error(400, f"simulator: only USER_ROOT (the path /, or id=ACCOUNT:1) is served, not {self.path}")
        importer = Importer(account, mailbox(account), resolve)
        ex = None
        if resolve is not None and resolve.lower() != "skip":
            # Resolve.valueOf of an unknown name: IllegalArgumentException, before anything.
            ex = ImportFault("formatter.UNKNOWN_ERROR", f"No enum constant com.zimbra.cs.service.formatter.ArchiveFormatter.Resolve.{resolve[:1].upper()}{resolve[1:].lower()}", receivers=True)
        if ex is None:
            try:
                tar = tarfile.open(fileobj=io.BytesIO(body), mode="r:gz")
            except (tarfile.TarError, OSError, EOFError):
                ex = ImportFault("formatter.INVALID_FORMAT", "invalid file format", ("filename", "STR", "unknown"))
        if ex is None:
            with tar:
                try:
                    importer.run(tar)
                except QuotaExceeded as q:
                    importer.errs.append(ImportFault("mail.QUOTA_EXCEEDED", f"mailbox exceeded quota of {q.args[0]} bytes",
                                                     ("limit", "NUM", str(q.args[0]))))
                except (tarfile.TarError, OSError, EOFError) as e:
                    # The entry loop's catch: a damaged archive ends the import with a warning.
                    importer.errs.append(ImportFault("formatter.UNKNOWN_ERROR", str(e), receivers=True))
        result = "fail" if ex else ("warn" if importer.errs else "success")
        codes = " ".join(e.code for e in ([ex] if ex else []) + importer.errs)
        log(f"POST {account} import {result} added={importer.added} skipped={importer.skipped} "
            f"callback={callback or '-'} acl={params.get('acl', '-')} {codes}".rstrip())
        if callback is None:
            if ex is not None:
                # ServiceException.FAILURE(getType() + " formatter failure"), sent as a 500 page.
                return self.jetty_error(500, "tgz formatter failure")
            return self.page(200, "")
        faults = "".join(",\n\t" + f.soap_js() for f in ([ex] if ex else []) + importer.errs)
        self.page(200, "<html>\n<head>\n</head>\n<body onload='onLoad()'>\n<script>\nfunction onLoad() {\n"
                       f"    window.parent.{callback}('{result}'{faults});\n}}\n</script>\n</body>\n</html>\n",
                  'text/html; charset="utf-8"')

    def fault(self, code, reason):
        self.page(500, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault>'
                       '<soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code>'
                       f"<soap:Reason><soap:Text>{xml_escape(reason)}</soap:Text></soap:Reason><soap:Detail>"
                       f'<Error xmlns="urn:zimbra"><Code>{code}</Code></Error></soap:Detail></soap:Fault></soap:Body></soap:Envelope>',
                  "application/soap+xml; charset=utf-8")

    def do_GET(self):
        """GET /home/ACCOUNT/?fmt=tgz or /home/~/?fmt=tgz&id=ACCOUNTID:1: the whole mailbox
        (UserServlet.doGet; the query must be exactly fmt=tgz, with id or without)."""
        where = UserPath(self.path)
        if where.error is not None:
            log(f"GET {self.path} {where.error[0]}")
            return self.jetty_error(*where.error)
        q = where.params
        if not (q.get("fmt") == ["tgz"] and set(q) <= {"fmt", "id"} and all(len(v) == 1 for v in q.values())):
            log(f"GET {self.path} 400")
            return self.jetty_error(400, f"simulator: only /home/ACCOUNT/?fmt=tgz (or /home/~/?fmt=tgz&id=ID:1) is served, not {self.path}")
        account = where.account_path
        if not self.authorised():
            log(f"GET {account} 401")
            return self.jetty_error(401, "must authenticate")
        target = where.target()
        if target is None:
            # No such account (or the admin's "~"): no mailbox, PERM_DENIED, sent as 404.
            log(f"GET {account} 404")
            return self.jetty_error(404, "no such item")
        account = target
        behaviour = accounts()[account]
        if behaviour != "maintenance" and not where.whole_mailbox():
            log(f"GET {account} 400 {self.path}")
            return self.jetty_error(400, f"simulator: only USER_ROOT (the path /, or id=ACCOUNT:1) is served, not {self.path}")
        log(f"GET {account} {behaviour}")
        if behaviour == "maintenance":
            # UserServlet.checkTargetAccountStatus: MAINTENANCE_MODE, sent as 404.
            return self.jetty_error(404, "account is in maintenance mode")
        if behaviour == "error":
            return self.jetty_error(500, "com.zimbra.cs.service.formatter.FormatterServiceException: mail.NO_SUCH_BLOB - "
                                         f"missing blob for id: 258, change: 1021 Code:formatter.UNKNOWN_ERROR")
        boxes = folders(mailbox(account))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-compressed-tar")
        self.send_header("Content-Disposition", 'attachment; filename="export.tgz"')
        self.end_headers()
        out = CutAfter(self.wfile, 3000) if behaviour == "cut" else self.wfile
        # "short": an error in the item loop ends it; ArchiveFormatter logs "Archive Formatter
        # warning" and still closes the archive normally, HTTP 200 (the catch around the loop).
        limit = 5 if behaviour == "short" else None
        try:
            self.stream(out, boxes, limit)
        except (ConnectionAbortedError, BrokenPipeError):
            pass

    @staticmethod
    def add(tar, name, data, item_type, mtime, mode=0o644):
        info = ZimbraTarInfo(name)
        info.size, info.mtime, info.mode, info.item_type = len(data), mtime, mode, item_type
        tar.addfile(info, io.BytesIO(data))

    def stream(self, out, boxes, limit):
        """AF.formatCallback: pass 1 the folders (sorted by path), pass 2 the `is:local` search's
        messages (grouped per folder here; Zimbra's order interleaves them)."""
        all_folders = dict(boxes)
        for name in ("Inbox", "Trash", "Junk", "Sent", "Drafts"):
            all_folders.setdefault(name, [])
        ids, item_id = folder_ids(all_folders)
        now = int(time.time())
        # AF.saveItem: a folder's entry path, and its item counter (1 when first seen; a folder
        # saved in pass 1 registers its parent, so a folder with subfolders counts from 2).
        entry_folder, counts = {}, {}

        def folder_part(folder):
            if folder not in entry_folder:
                entry_folder[folder] = ILLEGAL_FOLDER_CHARS.sub("_", folder)
                counts[folder] = 1
                return entry_folder[folder], True
            return entry_folder[folder], False

        with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.GNU_FORMAT) as tar:
            # Pass 1: a .meta entry for every folder, Trash and Junk included (their contents are
            # not exported): an empty mailbox is a 200 archive of these only.
            for folder in sorted(all_folders):
                parent, _, name = folder.rpartition("/")
                where = folder_part(parent)[0] + "/" if parent else ""
                meta = item_meta(id=ids[folder], uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, folder)), type=TYPE_FOLDER,
                                 parent_id=ids.get(parent, 1), folder_id=ids.get(parent, 1), imap_id=ids[folder], date=now,
                                 size=0, unread=0, flags=0, subject=name, name=name, Path="/" + folder, Ver=META_VERSION)
                self.add(tar, where + entry_name(ids[folder], name, ext="meta"), meta, TYPE_FOLDER, now)
            saved = 0
            for folder in sorted(boxes):
                if left_out(folder):
                    continue
                for path in boxes[folder]:
                    if limit is not None and saved >= limit:
                        return  # the archive is closed normally all the same
                    saved += 1
                    with open(path, "rb") as f:
                        data = f.read()
                    where, first = folder_part(folder)
                    if not first:
                        counts[folder] += 1
                        batch = counts[folder] // 500  # BATCH = 500
                        if batch:
                            where += f"!{batch}"
                    subject = subject_of(data)
                    name = f"{where}/{entry_name(item_id, subject)}"
                    date = int(os.path.getmtime(path))
                    letters, mask, unread = flag_str(path.rsplit(":2,", 1)[-1] if ":2," in path else "")
                    sender = header_value(data, "From")
                    meta = item_meta(id=item_id, uuid=str(uuid.uuid4()), type=TYPE_MESSAGE, parent_id=-item_id,
                                     folder_id=ids[folder], imap_id=item_id, date=date, size=len(data),
                                     blob_digest=digest(data), unread=int(unread), flags=mask, subject=subject,
                                     sender=sender.decode("utf-8", errors="replace").strip() if sender else "",
                                     FlagStr=letters, Path=f"/{folder}/", TagNames="")
                    # The .meta entry of an unread message is 0444 (TarArchiveOutputStream.setUnread).
                    self.add(tar, name + ".meta", meta, TYPE_MESSAGE, date, 0o444 if unread else 0o644)
                    self.add(tar, name, data, TYPE_MESSAGE, date)
                    item_id += 1


def main():
    port = int(lc("zimbra_admin_service_port"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(SIM, "cert.pem"), os.path.join(SIM, "key.pem"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    with open(os.path.join(SIM, "server.pid"), "w") as f:
        f.write(str(os.getpid()))
    httpd.serve_forever()


if __name__ == "__main__":
    main()
