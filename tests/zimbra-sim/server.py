#!/usr/bin/env python3
"""Simulated Zimbra admin HTTPS endpoint on 127.0.0.1 (the mailboxd admin port, 7071 on a real
server): POST /service/admin/soap/ AuthRequest (urn:zimbraAdmin) and GET /home/ACCOUNT/?fmt=tgz
authorised by the ZM_ADMIN_AUTH_TOKEN cookie, streamed as a gzip'd tar in ArchiveFormatter's
layout (folder .meta entries first, Trash and Junk left out, Folder!N every 500 items);
GetFolderRequest (urn:zimbraMail) acting as an account, with each folder's count; POST /home/ACCOUNT/?fmt=tgz&resolve=skip imports such a tar (messages skipped by digest). Usage: server.py SIMDIR (reads SIMDIR/localconfig, accounts, store/, cert.pem, key.pem)."""
import email.parser
import hashlib
import email.policy
import http.server
import io
import json
import os
import re
import secrets
import ssl
import sys
import tarfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

SIM = sys.argv[1]
LOG_LOCK = threading.Lock()
TOKENS = set()
# ArchiveFormatter.ILLEGAL_FILE_CHARS
ILLEGAL_FILE_CHARS = re.compile(r'[/:*?"<>|\x00]')


def lc(key):
    with open(os.path.join(SIM, "localconfig")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" = ")
            if k == key:
                return v
    raise KeyError(key)


def accounts():
    with open(os.path.join(SIM, "accounts")) as f:
        return dict(line.rstrip("\n").split("\t") for line in f if line.strip())


def xml_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def log(line):
    with LOG_LOCK, open(os.path.join(SIM, "requests.log"), "a") as f:
        f.write(line + "\n")


# Mailbox.ID_FOLDER_* of the system folders (FolderConstants); user folders start at 257.
SYSTEM_FOLDERS = {"Inbox": 2, "Trash": 3, "Junk": 4, "Sent": 5, "Drafts": 6, "Chats": 14}


def left_out(folder):
    """Trash (with its subfolders) and Junk: the export's `is:local` search leaves them out
    (ZimbraQuery.ensureSpamTrashSetting, the admin's zimbraPrefInclude{Trash,Spam}InSearch FALSE)."""
    return folder in ("Trash", "Junk") or folder.startswith("Trash/")


def folders(maildir):
    """(Zimbra folder path, [message files]) in Maildir++ order: Inbox, then .Sub folders."""
    out = []
    for sub, name in [("", "Inbox")] + sorted(
        (d, d[1:].replace(".", "/")) for d in os.listdir(maildir) if d.startswith(".")
    ):
        files = []
        for part in ("cur", "new"):
            p = os.path.join(maildir, sub, part)
            if os.path.isdir(p):
                files += [os.path.join(p, f) for f in sorted(os.listdir(p))]
        out.append((name, files))
    return out


def entry_name(item_id, subject):
    # ArchiveFormatter.getEntryName: id padded to 10, "-", the subject, cut at 120, illegal
    # characters replaced by "_", trailing dots dropped; "message-ID" when there is no subject.
    name = f"{item_id:010d}-{subject}" if subject else f"message-{item_id}"
    if len(name) > 121:
        name = name[:120]
    name = ILLEGAL_FILE_CHARS.sub("_", name).strip()
    while name.endswith("."):
        name = name[:-1].strip()
    return name + ".eml"


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

    def authorised(self):
        cookies = dict(
            c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c
        )
        return cookies.get("ZM_ADMIN_AUTH_TOKEN") in TOKENS

    def do_POST(self):
        parts = urllib.parse.urlsplit(self.path)
        m = re.fullmatch(r"/home/([^/]+)/?", parts.path)
        if m:
            return self.import_tgz(urllib.parse.unquote(m.group(1), errors="strict"), parts.query)
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
        self.page(200, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>'
                       '<context xmlns="urn:zimbra"/></soap:Header><soap:Body><AuthResponse xmlns="urn:zimbraAdmin">'
                       f"<authToken>{token}</authToken><lifetime>43199998</lifetime></AuthResponse></soap:Body></soap:Envelope>",
                  "application/soap+xml; charset=utf-8")

    def get_folder(self, root):
        """GetFolderRequest (urn:zimbraMail) on the admin port, acting as the account named in the
        context (ZimbraSoapContext: an admin token may; an account in maintenance is refused).
        Answers the folder tree from USER_ROOT with each folder's `n` (its own items, not its
        subfolders'), as ToXML.encodeFolder does; Trash is id 3 with no view, Junk id 4."""
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
        log(f"POST GetFolder {account} 200")
        boxes = dict(folders(os.path.join(SIM, "store", account, "Maildir")))
        for name in ("Inbox", "Trash", "Junk", "Sent", "Drafts"):
            boxes.setdefault(name, [])
        ids, next_id = {}, 257
        for name in sorted(boxes):
            if name in SYSTEM_FOLDERS:
                ids[name] = SYSTEM_FOLDERS[name]
            else:
                ids[name], next_id = next_id, next_id + 1

        def encode(path):
            name = path.rsplit("/", 1)[-1]
            view = "" if path == "Trash" else ' view="message"'
            parent = ids.get(path.rsplit("/", 1)[0], 1) if "/" in path else 1
            inner = "".join(encode(c) for c in sorted(boxes) if c.rsplit("/", 1)[0] == path and "/" in c)
            return (f'<folder i4ms="1" absFolderPath="/{xml_escape(path)}" id="{ids[path]}" name="{xml_escape(name)}"'
                    f' l="{parent}"{view} n="{len(boxes[path])}" s="0" rev="1">{inner}</folder>')

        tops = "".join(encode(p) for p in sorted(boxes) if "/" not in p)
        contacts = '<folder id="7" name="Contacts" absFolderPath="/Contacts" l="1" view="contact" n="3" s="0"/>'
        self.page(200, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>'
                       '<context xmlns="urn:zimbra"/></soap:Header><soap:Body><GetFolderResponse xmlns="urn:zimbraMail">'
                       f'<folder id="1" name="USER_ROOT" absFolderPath="/" l="11" n="0" s="0">{tops}{contacts}'
                       '<search id="301" name="Belum dibaca" absFolderPath="/Belum dibaca" l="1" query="is:unread"/>'
                       '</folder></GetFolderResponse></soap:Body></soap:Envelope>',
                  "application/soap+xml; charset=utf-8")

    def import_tgz(self, account, query):
        """POST /home/ACCOUNT/?fmt=tgz&resolve=skip: ArchiveFormatter's import, messages only.
        A message whose digest a message of the same folder already has is skipped (addData,
        Resolve.Skip); folders are made as needed; nothing is deleted."""
        params = urllib.parse.parse_qs(query)
        if params.get("fmt") != ["tgz"] or params.get("resolve") != ["skip"]:
            log(f"POST {account} 400 {query}")
            return self.jetty_error(400, f"simulator: only ?fmt=tgz&resolve=skip is served, not {query}")
        if not self.authorised():
            log(f"POST {account} 401")
            return self.jetty_error(401, "must authenticate")
        if accounts().get(account) is None:
            log(f"POST {account} 404")
            return self.jetty_error(404, "no such item")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        maildir = os.path.join(SIM, "store", account, "Maildir")
        added = skipped = 0
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            metas = {}
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()
                if member.name.endswith(".meta"):
                    metas[member.name[:-5]] = json.loads(data or b"{}")
                    continue
                if not member.name.endswith(".eml"):
                    continue
                folder = member.name.rsplit("/", 1)[0] if "/" in member.name else "Inbox"
                folder = re.sub(r"!\d+$", "", folder)
                sub = "" if folder == "Inbox" else "." + folder.replace("/", ".")
                digest = hashlib.sha256(data).hexdigest()
                existing = []
                for part in ("cur", "new"):
                    d = os.path.join(maildir, sub, part)
                    os.makedirs(d, exist_ok=True)
                    existing += [os.path.join(d, f) for f in os.listdir(d)]
                if any(hashlib.sha256(open(f, "rb").read()).hexdigest() == digest for f in existing):
                    skipped += 1
                    continue
                unread = metas.get(member.name, {}).get("unread", False)
                name = f"{int(time.time())}.M{secrets.token_hex(4)}P{os.getpid()}.sim:2,{'' if unread else 'S'}"
                with open(os.path.join(maildir, sub, "cur", name), "wb") as f:
                    f.write(data)
                added += 1
        log(f"POST {account} 200 import added={added} skipped={skipped}")
        self.page(200, "")

    def fault(self, code, reason):
        self.page(500, '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault>'
                       '<soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code>'
                       f"<soap:Reason><soap:Text>{reason}</soap:Text></soap:Reason><soap:Detail>"
                       f'<Error xmlns="urn:zimbra"><Code>{code}</Code></Error></soap:Detail></soap:Fault></soap:Body></soap:Envelope>',
                  "application/soap+xml; charset=utf-8")

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path)
        m = re.fullmatch(r"/home/([^/]+)/", parts.path)
        if not m or parts.query != "fmt=tgz":
            log(f"GET {self.path} 400")
            return self.jetty_error(400, f"simulator: only /home/ACCOUNT/?fmt=tgz is served, not {self.path}")
        account = urllib.parse.unquote(m.group(1), errors="strict")
        if not self.authorised():
            log(f"GET {account} 401")
            return self.jetty_error(401, "must authenticate")
        behaviour = accounts().get(account)
        if behaviour is None:
            log(f"GET {account} 404")
            return self.jetty_error(404, "no such item")
        log(f"GET {account} {behaviour}")
        if behaviour == "maintenance":
            # UserServlet.checkTargetAccountStatus: MAINTENANCE_MODE, sent as 404.
            return self.jetty_error(404, "account is in maintenance mode")
        if behaviour == "error":
            return self.jetty_error(500, "com.zimbra.cs.service.formatter.FormatterServiceException: mail.NO_SUCH_BLOB - "
                                         f"missing blob for id: 258, change: 1021 Code:formatter.UNKNOWN_ERROR")
        maildir = os.path.join(SIM, "store", account, "Maildir")
        every = folders(maildir)
        boxes = [(f, files) for f, files in every if files and not left_out(f)]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-compressed-tar")
        self.send_header("Content-Disposition", 'attachment; filename="export.tgz"')
        self.end_headers()
        out = CutAfter(self.wfile, 3000) if behaviour == "cut" else self.wfile
        # "short": an error in the item loop ends it; ArchiveFormatter logs "Archive Formatter
        # warning" and still closes the archive normally, HTTP 200 (the catch around the loop).
        limit = 5 if behaviour == "short" else None
        try:
            self.stream(out, [f for f, _ in every], boxes, limit)
        except (ConnectionAbortedError, BrokenPipeError):
            pass

    def stream(self, out, all_folders, boxes, limit):
        item_id = 1000  # folders first (pass 1), then the items of the `is:local` search
        with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.GNU_FORMAT) as tar:
            # Pass 1: a .meta entry for every folder, Trash and Junk included (their contents
            # are not exported): an empty mailbox is a 200 archive of these only.
            for folder in ["Inbox", "Trash", "Junk", "Sent", "Drafts"] + [f for f in all_folders if f not in SYSTEM_FOLDERS]:
                parent, _, name = folder.rpartition("/")
                fid = SYSTEM_FOLDERS.get(folder, 0) or item_id
                entry = (parent + "/" if parent else "") + f"{fid:010d}-{name}.meta"
                meta = json.dumps({"id": fid, "type": "folder", "path": "/" + folder}).encode()
                info = tarfile.TarInfo(entry)
                info.size, info.mode = len(meta), 0o644
                tar.addfile(info, io.BytesIO(meta))
                item_id += 1
            saved = 0
            for folder, files in boxes:
                for n, path in enumerate(files, start=1):
                    if limit is not None and saved >= limit:
                        return  # the archive is closed normally all the same
                    saved += 1
                    with open(path, "rb") as f:
                        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parse(f)
                    subject = str(headers.get("Subject", "") or "")
                    # ArchiveFormatter: the folder's counter starts at 1 when first seen, and
                    # `cnt / BATCH` (BATCH = 500) > 0 puts the item in "Folder!cnt".
                    batch = (n + 1) // 500
                    where = folder + (f"!{batch}" if batch else "")
                    name = f"{where}/{entry_name(item_id, subject)}"
                    size = os.path.getsize(path)
                    mtime = int(os.path.getmtime(path))
                    flags = path.rsplit(":2,", 1)[-1] if ":2," in path else ""
                    # The .meta entry first (ItemData.encode(): the item's metadata; simplified here).
                    meta = json.dumps({"id": item_id, "type": "message", "path": "/" + folder,
                                       "size": size, "unread": "S" not in flags}).encode()
                    info = tarfile.TarInfo(name + ".meta")
                    info.size, info.mtime, info.mode = len(meta), mtime, 0o644
                    tar.addfile(info, io.BytesIO(meta))
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = size, mtime, 0o644
                    with open(path, "rb") as f:
                        tar.addfile(info, f)  # copied in blocks: the message is streamed
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
