//! A hostile mail corpus (issue 26): mail as the field has it, written byte for byte straight
//! into Maildirs (as Dovecot stores them: Maildir++ folders, names in modified UTF-7, flags in
//! the file names, internal dates in the files' mtimes) — folded and very long `Message-ID`s,
//! none at all, one id many times in one folder and across folders, byte-identical twins, 8-bit
//! and RFC 2047 headers, CRLF, LF and mixed line ends, a NUL, no final newline, a message of
//! 20 MB, \Deleted and keyword flags, empty folders, folders six deep, names with spaces, `&` and
//! non-ASCII, and messages still in `new/`.
//!
//! Backed up and restored by the engine on each Dovecot `scripts/test` runs (Dovecot's default
//! separator, `/`, an `INBOX.` prefix) and as a plain Maildir store, then compared message for
//! message (SHA-256, flags, internal date; file for file on the Maildir store); a second restore
//! adds nothing. A backup folder whose archive is short by one message, and a listing cut off on
//! the way, make the restore fail by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::engine::{backup, settings};
use crate::imap::{DatedContents, Imap};
use crate::support::{env, files_under, folder_name, sh, test_dir, PrivateSshd};

use mailbox_backup_bot::config::{BackupKind, EngineSettings, MailStore};
use mailbox_backup_bot::engine::restore::{restore, RestoreError, RestoreReport};
use mailbox_backup_bot::engine::{BackupReport, MailboxResult, MailboxStatus};

/// One message of the corpus as it lies in a Maildir.
struct Message {
    bytes: Vec<u8>,
    /// The Maildir flags of its name (`RS`, `Sab` …; lowercase letters are keywords, see
    /// [`KEYWORDS`]); empty for a message in `new/`.
    flags: &'static str,
    /// Still in `new/`: delivered, never seen by a mail client.
    new: bool,
    /// Its file's mtime, which Dovecot gives as its internal date.
    date: i64,
}

/// Folder (UTF-8, `.` between levels, `INBOX` for the Maildir's top) → its messages.
type Corpus = BTreeMap<String, Vec<Message>>;

/// Every folder's `dovecot-keywords`: the keywords the lowercase flag letters stand for.
const KEYWORDS: &str = "0 $Forwarded\n1 Penting\n";

/// The corpus as it is built: each message dated after the one before.
struct Builder {
    corpus: Corpus,
    date: i64,
}

impl Builder {
    /// `bytes` into `folder` with `flags` (`None`: in `new/`), an hour and a bit after the last.
    fn put(&mut self, folder: &str, bytes: impl Into<Vec<u8>>, flags: Option<&'static str>) {
        self.date += 3_607;
        self.again(folder, bytes, flags);
    }

    /// As [`put`](Self::put), with the date of the message before: a twin can be one to the
    /// second.
    fn again(&mut self, folder: &str, bytes: impl Into<Vec<u8>>, flags: Option<&'static str>) {
        self.corpus
            .entry(folder.to_owned())
            .or_default()
            .push(Message {
                bytes: bytes.into(),
                flags: flags.unwrap_or(""),
                new: flags.is_none(),
                date: self.date,
            });
    }
}

/// A message with CRLF line ends: `headers` (one a line) and `body`.
fn crlf(headers: &[&str], body: &str) -> Vec<u8> {
    format!(
        "{}\r\n\r\n{}",
        headers.join("\r\n"),
        body.replace('\n', "\r\n")
    )
    .into_bytes()
}

/// The corpus; `big` adds the message of 20 MB.
fn corpus(big: bool) -> Corpus {
    const FROM: &str = "From: Kasi Arsip <kasi@djki.go.id>";
    const TO: &str = "To: pegawai@djki.go.id";
    let mut b = Builder {
        corpus: Corpus::new(),
        // 2019-01-01 00:00:00 UTC.
        date: 1_546_300_800,
    };
    let inbox = "INBOX";
    b.put(
        inbox,
        crlf(
            &[
                FROM,
                TO,
                "Subject: CRLF biasa",
                "Date: Mon, 4 Mar 2019 05:06:07 +0700",
                "Message-ID: <crlf.1@djki.go.id>",
            ],
            "Baris satu\nBaris dua\n",
        ),
        Some("S"),
    );
    b.put(
        inbox,
        "From: kasi@djki.go.id\nTo: pegawai@djki.go.id\nSubject: LF saja\nMessage-ID: <lf.1@djki.go.id>\n\nBaris satu\nBaris dua\n",
        Some(""),
    );
    // CRLF, LF and a lone CR in one message; the header ends at CRLF LF.
    b.put(
        inbox,
        &b"From: kasi@djki.go.id\r\nSubject: campuran\nMessage-ID: <mixed.1@djki.go.id>\r\n\nsatu\r\ndua\nti\rga\r\n"[..],
        Some("RS"),
    );
    // Message-IDs folded onto the next line, folded inside the brackets, and 1,500 characters
    // long on a line longer than RFC 5322 allows.
    let folded = crlf(
        &[
            FROM,
            TO,
            "Subject: Message-ID terlipat",
            "Message-ID:\r\n <folded.1@djki.go.id>",
        ],
        "isi\n",
    );
    b.put(inbox, folded.clone(), Some("FS"));
    b.put(
        inbox,
        crlf(
            &[
                FROM,
                "Subject: terlipat di dalam",
                "Message-ID:\r\n\t<folded.2.\r\n\tbagian@djki.go.id>",
            ],
            "isi\n",
        ),
        Some("S"),
    );
    let long_id = format!("Message-ID:\r\n <{}@djki.go.id>", "panjang".repeat(215));
    b.put(
        inbox,
        crlf(&[FROM, "Subject: Message-ID panjang", &long_id], "isi\n"),
        Some(""),
    );
    // No Message-ID at all, twice the same bytes with the same date and flags.
    let anonymous = crlf(&[FROM, "Subject: tanpa Message-ID"], "tanpa id\n");
    b.put(inbox, anonymous.clone(), Some("S"));
    b.again(inbox, anonymous, Some("S"));
    // One Message-ID three times here (different mail), and in Sent and in new/ below.
    for (body, flags) in [("pertama", "S"), ("kedua", ""), ("ketiga", "Sa")] {
        b.put(
            inbox,
            crlf(
                &[
                    FROM,
                    "Subject: id kembar",
                    "Message-ID: <kembar@djki.go.id>",
                ],
                body,
            ),
            Some(flags),
        );
    }
    // 8-bit headers: raw UTF-8, and raw Latin-1 (not UTF-8 at all).
    b.put(
        inbox,
        crlf(
            &[
                "From: \"Budi Sétiawan\" <budi@djki.go.id>",
                "Subject: Laporan keuangan – Ærø 日本",
                "Message-ID: <8bit.1@djki.go.id>",
            ],
            "Isi dengan é, ø dan 日本語.\n",
        ),
        Some("S"),
    );
    let latin1 = b"From: Andr\xe9 <andre@djki.go.id>\r\nSubject: caf\xe9 \xe0 la cr\xe8me\r\nMessage-ID: <latin1.1@djki.go.id>\r\n\r\nd\xe9j\xe0 vu \xff\r\n".to_vec();
    b.put(inbox, latin1, Some(""));
    // RFC 2047, folded between encoded words.
    b.put(
        inbox,
        crlf(
            &[
                "From: =?UTF-8?Q?Budi_S=C3=A9tiawan?= <budi@djki.go.id>",
                "Subject: =?UTF-8?B?TGFwb3JhbiDDhnLDuA==?=\r\n =?ISO-8859-1?Q?caf=E9?=",
                "Message-ID: <2047.1@djki.go.id>",
            ],
            "isi\n",
        ),
        Some("Sab"),
    );
    b.put(
        inbox,
        &b"From: kasi@djki.go.id\r\nSubject: ada NUL\r\nMessage-ID: <nul.1@djki.go.id>\r\n\r\nsebelum\x00sesudah\r\n"[..],
        Some("S"),
    );
    // Headers only, and no newline at the end.
    b.put(
        inbox,
        &b"From: kasi@djki.go.id\r\nSubject: tanpa isi\r\nMessage-ID: <kosong.1@djki.go.id>"[..],
        Some(""),
    );
    b.put(
        inbox,
        crlf(
            &[FROM, "Subject: dihapus", "Message-ID: <hapus.1@djki.go.id>"],
            "isi\n",
        ),
        Some("ST"),
    );
    b.put(
        inbox,
        crlf(
            &[FROM, "Subject: draf", "Message-ID: <draf.1@djki.go.id>"],
            "isi\n",
        ),
        Some("D"),
    );
    // Delivered and not yet seen: still in new/.
    b.put(
        inbox,
        crlf(
            &[
                FROM,
                TO,
                "Subject: baru datang",
                "Message-ID: <baru.1@djki.go.id>",
            ],
            "baru\n",
        ),
        None,
    );
    b.put(
        inbox,
        "From: kasi@djki.go.id\nSubject: baru juga, LF\nMessage-ID: <kembar@djki.go.id>\n\nbaru\n",
        None,
    );
    if big {
        b.put(inbox, twenty_megabytes(), Some("S"));
    }

    let sent = "Sent";
    b.put(
        sent,
        crlf(
            &[
                FROM,
                "Subject: id kembar terkirim",
                "Message-ID: <kembar@djki.go.id>",
            ],
            "terkirim\n",
        ),
        Some("S"),
    );
    // The same bytes as in INBOX.
    b.put(sent, folded, Some("S"));
    b.put(
        sent,
        crlf(
            &[FROM, "Subject: dibalas", "Message-ID: <balas.1@djki.go.id>"],
            "isi\n",
        ),
        Some("RS"),
    );

    // Empty folders, one inside the other.
    b.corpus.entry("Kosong".into()).or_default();
    b.corpus.entry("Kosong.Dalam".into()).or_default();

    let names = [
        "Surat Masuk",
        "R&D",
        "Ærø & Co",
        "日本語 メール",
        "Tingkat1",
        "Tingkat1.Tingkat2.Tingkat3.Tingkat4.Tingkat5.Tingkat6",
    ];
    for name in names {
        b.put(
            name,
            crlf(
                &[
                    FROM,
                    &format!("Subject: di {name}"),
                    "Message-ID: <folder@djki.go.id>",
                ],
                "isi\n",
            ),
            Some("S"),
        );
    }
    b.put(
        "Surat Masuk",
        crlf(&[FROM, "Subject: baru di Surat Masuk"], "baru\n"),
        None,
    );
    b.put(
        names[5],
        "From: kasi@djki.go.id\nSubject: jauh di dalam\nMessage-ID: <dalam.1@djki.go.id>\n\nisi\n",
        Some("F"),
    );
    b.put(
        names[5],
        crlf(&[FROM, "Subject: baru jauh di dalam"], "baru\n"),
        None,
    );
    b.corpus
}

/// A message of 20 MB: a base64 attachment of pseudo-random bytes (made here, never committed).
fn twenty_megabytes() -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut msg = crlf(
        &[
            "From: kasi@djki.go.id",
            "Subject: lampiran 20 MB",
            "Message-ID: <besar.1@djki.go.id>",
            "MIME-Version: 1.0",
            "Content-Type: application/octet-stream; name=arsip.bin",
            "Content-Transfer-Encoding: base64",
        ],
        "",
    );
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while msg.len() < 20 << 20 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            msg.push(ALPHABET[(x % 64) as usize]);
        }
        msg.extend_from_slice(b"\r\n");
    }
    msg
}

/// A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3), as Dovecot's Maildir stores it.
fn mutf7(name: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(out: &mut String, wide: &mut Vec<u16>) {
        if wide.is_empty() {
            return;
        }
        let bytes: Vec<u8> = wide.drain(..).flat_map(u16::to_be_bytes).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out.push('-');
    }
    let mut out = String::new();
    let mut wide = Vec::new();
    for c in name.chars() {
        match c {
            '&' => {
                flush(&mut out, &mut wide);
                out.push_str("&-");
            }
            ' '..='~' => {
                flush(&mut out, &mut wide);
                out.push(c);
            }
            _ => wide.extend(c.encode_utf16(&mut [0; 2]).iter()),
        }
    }
    flush(&mut out, &mut wide);
    out
}

#[test]
fn folder_names_are_encoded_as_imap_names_them() {
    assert_eq!(mutf7("R&D"), "R&-D");
    assert_eq!(mutf7("Surat Masuk"), "Surat Masuk");
    // RFC 3501's own example.
    assert_eq!(
        mutf7("~peter/mail/台北/日本語"),
        "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    );
    assert_eq!(mutf7("Ærø & Co"), "&AMY-r&APg- &- Co");
}

/// Writes `corpus` as the Maildir++ tree at `top` (which must not hold messages yet); returns
/// how many messages it holds.
fn write_maildir(top: &Path, corpus: &Corpus) -> usize {
    let mut n = 0;
    for (folder, messages) in corpus {
        let dir = if folder == "INBOX" {
            top.to_path_buf()
        } else {
            top.join(format!(".{}", mutf7(folder)))
        };
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        if folder != "INBOX" {
            std::fs::write(dir.join("maildirfolder"), "").expect("maildirfolder");
        }
        std::fs::write(dir.join("dovecot-keywords"), KEYWORDS).expect("keywords");
        for m in messages {
            assert!(
                !m.new || m.flags.is_empty(),
                "a message in new/ has no flags"
            );
            let base = format!("{}.M{n}P{}.wild", m.date, std::process::id());
            let path = if m.new {
                dir.join("new").join(base)
            } else {
                dir.join("cur").join(format!("{base}:2,{}", m.flags))
            };
            std::fs::write(&path, &m.bytes).expect("message");
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("message");
            file.set_modified(UNIX_EPOCH + Duration::from_secs(m.date as u64))
                .expect("mtime");
            n += 1;
        }
    }
    n
}

/// The IMAP flags a Maildir name's flags stand for (sorted, as [`Imap`] gives them).
fn imap_flags(maildir: &str) -> Vec<String> {
    let mut flags: Vec<String> = maildir
        .chars()
        .map(|c| {
            match c {
                'S' => "\\Seen",
                'R' => "\\Answered",
                'F' => "\\Flagged",
                'D' => "\\Draft",
                'T' => "\\Deleted",
                'a' => "$Forwarded",
                'b' => "Penting",
                other => panic!("no flag {other}"),
            }
            .to_owned()
        })
        .collect();
    flags.sort();
    flags
}

/// How a Dovecot names the corpus' folder `folder`: its separator `sep` and prefix `prefix`.
fn imap_name(folder: &str, sep: char, prefix: &str) -> String {
    if folder == "INBOX" {
        return folder.to_owned();
    }
    format!("{prefix}{}", mutf7(folder).replace('.', &sep.to_string()))
}

/// The mailbox read over IMAP is the corpus: every folder under its name, each with as many
/// messages, with the corpus' internal dates and flags.
fn is_the_corpus(seen: &DatedContents, corpus: &Corpus, sep: char, prefix: &str) {
    for (folder, messages) in corpus {
        let name = imap_name(folder, sep, prefix);
        let held = seen
            .get(&name)
            .unwrap_or_else(|| panic!("{name:?} is not in the mailbox: {:?}", seen.keys()));
        let mut want: Vec<(i64, Vec<String>)> = messages
            .iter()
            .map(|m| (m.date, imap_flags(m.flags)))
            .collect();
        let mut got: Vec<(i64, Vec<String>)> = held
            .iter()
            .map(|m| (m.internal_date, m.flags.clone()))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{name}: internal dates and flags");
    }
}

/// What differs between two mailboxes read over IMAP, folder by folder (empty: nothing).
fn differences(a: &DatedContents, b: &DatedContents) -> Vec<String> {
    let mut out = Vec::new();
    for folder in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        match (a.get(folder), b.get(folder)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let only = |p: &Vec<crate::imap::Dated>, q: &Vec<crate::imap::Dated>| {
                    p.iter().filter(|m| !q.contains(m)).count()
                };
                out.push(format!(
                    "{folder}: {} messages and {}, {} only in the first, {} only in the second",
                    x.len(),
                    y.len(),
                    only(x, y),
                    only(y, x)
                ));
                let shown = |p: &Vec<crate::imap::Dated>, q: &Vec<crate::imap::Dated>| {
                    p.iter()
                        .filter(|m| !q.contains(m))
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                out.push(format!("  first: {}", shown(x, y)));
                out.push(format!("  second: {}", shown(y, x)));
            }
            (Some(_), None) => out.push(format!("{folder}: only in the first")),
            (None, _) => out.push(format!("{folder}: only in the second")),
        }
    }
    out
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Accounts of this test's own on one Dovecot: lines added to its passwd-file (password
/// `secret`), taken out again with their mail when dropped, whatever happened.
struct Accounts {
    conf: String,
    names: Vec<String>,
}

impl Accounts {
    fn add(conf: &str, roles: &[&str]) -> Accounts {
        let names: Vec<String> = roles
            .iter()
            .map(|r| {
                let k = NEXT.fetch_add(1, Ordering::SeqCst);
                format!("wild-{}-{k}-{r}@djki.go.id", std::process::id())
            })
            .collect();
        let accounts = Accounts {
            conf: conf.to_owned(),
            names,
        };
        let lines: String = accounts
            .names
            .iter()
            .map(|n| format!("{n}:{{PLAIN}}secret::::::\n"))
            .collect();
        edit_users(conf, |text| text + &lines).expect("users added");
        for name in &accounts.names {
            settle(conf, name);
        }
        accounts
    }

    /// The account's mail home (its Maildir is `Maildir` in it).
    fn home(&self, name: &str) -> PathBuf {
        Path::new(&self.conf).with_file_name("mail").join(name)
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let ours = |l: &str| self.names.iter().any(|n| l.starts_with(&format!("{n}:")));
        let _ = edit_users(&self.conf, |text| {
            text.lines()
                .filter(|l| !ours(l))
                .map(|l| format!("{l}\n"))
                .collect()
        });
        for name in &self.names {
            let _ = std::fs::remove_dir_all(self.home(name));
        }
    }
}

/// Rewrites the passwd-file beside `conf` with `edit`, whole at once (a new file renamed over
/// it: Dovecot never reads half of it), one test at a time.
fn edit_users(conf: &str, edit: impl FnOnce(String) -> String) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let users = Path::new(conf).with_file_name("users");
    let lock = std::fs::File::create(users.with_file_name("users.wild-lock"))?;
    // SAFETY: flock on a descriptor this function owns; released when it is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let meta = std::fs::metadata(&users)?;
    let text = edit(std::fs::read_to_string(&users)?);
    let next = users.with_file_name(format!("users.wild-{}", std::process::id()));
    std::fs::write(&next, text)?;
    std::fs::set_permissions(&next, meta.permissions())?;
    std::os::unix::fs::chown(&next, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::rename(&next, &users)
}

/// Dovecot reads a changed passwd-file again when it sees it changed (within the same second
/// it may not): waits up to five seconds until it knows `user`.
fn settle(conf: &str, user: &str) {
    for _ in 0..50 {
        let known = std::process::Command::new("doveadm")
            .args(["-c", conf, "user", user])
            .output()
            .expect("doveadm")
            .status
            .success();
        if known {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Dovecot does not know {user}");
}

fn result_of<'a>(report: &'a BackupReport, account: &str) -> &'a MailboxResult {
    report
        .mailboxes
        .iter()
        .find(|m| m.account == account)
        .unwrap_or_else(|| panic!("{account} is not in the backup: {report:?}"))
}

fn assert_whole(report: &RestoreReport, n: usize, restored: usize) {
    assert!(
        report.complete(),
        "{:?}: {report:?}",
        report.why_incomplete()
    );
    assert_eq!(report.recorded, Some(n as u64), "{report:?}");
    assert_eq!(report.in_backup(), n, "{report:?}");
    assert_eq!(report.restored(), restored, "{report:?}");
}

/// A restore of everything the corpus account holds, on one Dovecot, done and checked.
struct Trip {
    dir: PathBuf,
    s: EngineSettings,
    port: u16,
    folder: String,
    file: String,
    messages: usize,
    accounts: Accounts,
}

impl Trip {
    fn source(&self) -> &str {
        &self.accounts.names[0]
    }

    fn target(&self) -> &str {
        &self.accounts.names[1]
    }

    fn read(&self, account: &str) -> DatedContents {
        Imap::login(self.port, account, "secret").dated_contents()
    }

    /// Passed: the accounts go, and the backup folders (a failed test leaves them to look at).
    fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The corpus (`big`: with its message of 20 MB) in a fresh account of the Dovecot of
/// `TEST_DOVECOT_{variant}` (named with separator `sep` and prefix `prefix`), backed up by the
/// engine and restored into another fresh account: the same message for message over IMAP,
/// and again with nothing added.
async fn dovecot_round_trip(variant: &str, sep: char, prefix: &str, big: bool) -> Trip {
    let var = |what: &str| match variant {
        "" => format!("TEST_DOVECOT_{what}"),
        v => format!("TEST_DOVECOT_{v}_{what}"),
    };
    let conf = env(&var("CONF"));
    let port: u16 = env(&var("IMAP_PORT")).parse().expect("port");
    let dir = test_dir(&format!("wild{}", variant.to_lowercase()));
    let accounts = Accounts::add(&conf, &["asal", "pulih"]);
    let (source, target) = (accounts.names[0].clone(), accounts.names[1].clone());
    let corpus = corpus(big);
    let home = accounts.home(&source);
    let messages = write_maildir(&home.join("Maildir"), &corpus);
    sh("chown", &["-R", "vmail:vmail", &home.to_string_lossy()]);

    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Dovecot {
            config: Some(conf.clone()),
        }),
    );
    let started = std::time::Instant::now();
    let report = backup(&s, None).await.expect("the backup runs");
    eprintln!("backup: {:?}", started.elapsed());
    let copy = result_of(&report, &source);
    assert_eq!(copy.status, MailboxStatus::Verified, "{copy:?}");
    assert_eq!(
        copy.messages,
        Some(messages as u64),
        "the archive holds every message of the corpus"
    );
    let original = Imap::login(port, &source, "secret").dated_contents();
    is_the_corpus(&original, &corpus, sep, prefix);
    // Folders: the corpus' and the parents of the deepest, which hold nothing and are not listed.
    assert_eq!(original.len(), corpus.len(), "{:?}", original.keys());

    let trip = Trip {
        dir,
        s,
        port,
        folder: folder_name(&report),
        file: copy.file.clone(),
        messages,
        accounts,
    };
    let started = std::time::Instant::now();
    let first = restore(&trip.s, &trip.folder, &source, Some(&target), None, |_| {})
        .await
        .expect("the restore runs");
    eprintln!("restore: {:?}", started.elapsed());
    assert_whole(&first, messages, messages);
    let restored = trip.read(&target);
    let diff = differences(&original, &restored);
    assert!(diff.is_empty(), "the restore differs: {diff:#?}");

    let second = restore(&trip.s, &trip.folder, &source, Some(&target), None, |_| {})
        .await
        .expect("the second restore runs");
    assert_whole(&second, messages, 0);
    assert!(
        differences(&restored, &trip.read(&target)).is_empty(),
        "a second restore changes nothing"
    );
    trip
}

/// A copy of backup folder `folder` under `root`, its archive `file` made again with one message
/// file of a `cur/` taken out and its sums and index made to match (as a forger, or a damaged
/// copy re-summed, would leave it); the copy's name.
fn short_by_one(work: &Path, root: &Path, folder: &str, file: &str) -> String {
    let unpacked = work.join("short-unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    sh(
        "tar",
        &[
            "-xzf",
            &root.join(folder).join(file).to_string_lossy(),
            "-C",
            &unpacked.to_string_lossy(),
        ],
    );
    let victim = files_under(&unpacked)
        .into_iter()
        .filter(|f| f.parent().and_then(Path::file_name) == Some("cur".as_ref()))
        .min()
        .expect("a message to take out");
    std::fs::remove_file(&victim).expect("one message out");
    // A piece: its manifest loses the message too, so the archive is whole but one short.
    let manifest = unpacked.join("mbb-manifest");
    if manifest.is_file() {
        let rel = victim
            .strip_prefix(&unpacked)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        let kept: String = text
            .lines()
            .filter(|l| !l.ends_with(&format!("\t{rel}")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&manifest, &kept).expect("manifest");
        let header = unpacked.join("mbb-piece");
        let text = std::fs::read_to_string(&header).expect("header");
        let n = kept.lines().count();
        let text: String = text
            .lines()
            .map(|l| match l.starts_with("messages=") {
                true => format!("messages={n}\n"),
                false => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&header, text).expect("header");
    }
    let short = work.join("short.tar.gz");
    let mut tar = std::process::Command::new("tar");
    tar.arg("-czf").arg(&short).arg("-C").arg(&unpacked);
    // A piece's header and manifest come first.
    let mut tops: Vec<std::ffi::OsString> = std::fs::read_dir(&unpacked)
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    tops.sort_by_key(|n| (n != "mbb-piece", n != "mbb-manifest", n.clone()));
    for top in tops {
        tar.arg(top);
    }
    assert!(tar.status().expect("tar").success());
    let name = format!("{folder}-short");
    let account = file.strip_suffix(".tar.gz").expect("an archive");
    crate::hostile::forge(
        &root.join(folder),
        &root.join(&name),
        account,
        &std::fs::read(&short).expect("short archive"),
    );
    name
}

/// The restore of an archive short of the message count its backup recorded is not complete,
/// and says so with both figures; it adds nothing to an account that holds everything.
fn fails_short(report: &RestoreReport, n: usize) {
    assert!(!report.complete(), "{report:?}");
    assert_eq!(report.short_of(), Some((n - 1, n as u64)), "{report:?}");
    let why = report.why_incomplete().expect("a reason");
    assert!(
        why.contains(&format!("counted {n} messages")) && why.contains(&format!("only {}", n - 1)),
        "{why}"
    );
    assert_eq!(report.restored(), 0, "{report:?}");
}

#[tokio::test]
async fn wild_mail_on_the_default_dovecot_comes_back_message_for_message_and_a_short_restore_fails_by_name(
) {
    let trip = dovecot_round_trip("", '.', "", false).await;
    let restored = trip.read(trip.target());

    // (a) An archive one message short of what its backup counted when it was verified.
    let short = short_by_one(&trip.dir, &trip.s.local_root, &trip.folder, &trip.file);
    let report = restore(
        &trip.s,
        &short,
        trip.source(),
        Some(trip.target()),
        None,
        |_| {},
    )
    .await
    .expect("the restore runs");
    fails_short(&report, trip.messages);

    // (b) doveadm's listing of the archive cut off on the way (a doveadm in the SSH session's
    // PATH that drops the last bytes of every `fetch` and exits 0): refused, nothing imported.
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v doveadm"])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let bin = trip.dir.join("cut-bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let wrapper = bin.join("doveadm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# doveadm whose message listings lose their last 60 bytes on the way.\nfor a in \"$@\"; do\n  if [ \"$a\" = fetch ]; then '{real}' \"$@\" | head -c -60; exit 0; fi\ndone\nexec '{real}' \"$@\"\n"
        ),
    )
    .expect("wrapper");
    sh("chmod", &["0755", &wrapper.to_string_lossy()]);
    let sshd = PrivateSshd::start_with(
        &trip.dir,
        &format!(
            "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            bin.display()
        ),
    );
    let mut cut = trip.s.clone();
    sshd.use_in(&mut cut);
    let fresh = Accounts::add(&trip.accounts.conf, &["potong"]);
    let err = restore(
        &cut,
        &trip.folder,
        trip.source(),
        Some(&fresh.names[0]),
        None,
        |_| {},
    )
    .await
    .expect_err("a listing cut off is refused");
    assert!(
        matches!(&err, RestoreError::Server(m) if m.contains("listing does not parse")),
        "{err:?}"
    );
    drop(sshd);
    let held: usize = trip.read(&fresh.names[0]).values().map(Vec::len).sum();
    assert_eq!(held, 0, "nothing was imported from a listing cut off");
    assert!(
        differences(&restored, &trip.read(trip.target())).is_empty(),
        "the failed restores changed nothing"
    );
    drop(fresh);
    trip.finish();
}

#[tokio::test]
async fn wild_mail_of_20_mb_on_dovecot_with_the_slash_separator_comes_back_message_for_message() {
    dovecot_round_trip("SLASH", '/', "", true).await.finish();
}

#[tokio::test]
async fn wild_mail_on_dovecot_with_an_inbox_prefix_comes_back_message_for_message_and_into_the_account_it_left(
) {
    let trip = dovecot_round_trip("PREFIX", '.', "INBOX.", false).await;
    let source = trip.source().to_owned();
    let original = trip.read(&source);

    // Mail lost from the account itself: both byte-identical twins without a Message-ID, one of
    // three messages with one Message-ID, a folder six deep and one named with `&` and non-ASCII.
    let deep = imap_name(
        "Tingkat1.Tingkat2.Tingkat3.Tingkat4.Tingkat5.Tingkat6",
        '.',
        "INBOX.",
    );
    let odd = "INBOX.Ærø & Co";
    for query in [
        &["INBOX", "header", "Subject", "tanpa Message-ID"][..],
        &["INBOX", "body", "kedua"],
        &[deep.as_str(), "all"],
        &[odd, "all"],
    ] {
        let mut args = vec![
            "-c",
            &trip.accounts.conf,
            "expunge",
            "-u",
            &source,
            "mailbox",
        ];
        args.extend_from_slice(query);
        sh("doveadm", &args);
    }
    let lost = original.values().map(Vec::len).sum::<usize>()
        - trip.read(&source).values().map(Vec::len).sum::<usize>();
    assert_eq!(
        lost, 7,
        "two twins, one of three, three six deep, one in {odd}"
    );

    let back = restore(&trip.s, &trip.folder, &source, None, None, |_| {})
        .await
        .expect("the restore runs");
    assert_whole(&back, trip.messages, lost);
    let diff = differences(&original, &trip.read(&source));
    assert!(
        diff.is_empty(),
        "exactly what was lost came back: {diff:#?}"
    );
    trip.finish();
}

/// Every message file of the Maildir tree at `top` (in a `cur/` or `new/`), by its path in the
/// tree (folder, `cur` or `new`, name with flags): its SHA-256 and mtime.
fn message_files(top: &Path) -> BTreeMap<String, (String, i64)> {
    use std::os::unix::fs::MetadataExt;
    files_under(top)
        .into_iter()
        .filter(|f| {
            matches!(
                f.parent()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str()),
                Some("cur" | "new")
            )
        })
        .map(|f| {
            let bytes = std::fs::read(&f).expect("message");
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let mtime = std::fs::metadata(&f).expect("stat").mtime();
            let rel = f
                .strip_prefix(top)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            (rel, (sha, mtime))
        })
        .collect()
}

#[tokio::test]
async fn wild_mail_in_a_plain_maildir_store_comes_back_file_for_file_and_a_short_restore_fails_by_name(
) {
    let dir = test_dir("wildmd");
    let root = dir.join("maildirs");
    let corpus = corpus(false);
    let messages = write_maildir(&root.join("asal"), &corpus);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join("pulih").join(sub)).expect("target");
    }
    let s = settings(
        &dir,
        BackupKind::Mailboxes(MailStore::Maildir {
            root: root.to_string_lossy().into_owned(),
        }),
    );
    let report = backup(&s, None).await.expect("the backup runs");
    assert!(report.all_verified(), "{report:?}");
    let copy = result_of(&report, "asal");
    assert_eq!(copy.messages, Some(messages as u64), "{copy:?}");
    let original = message_files(&root.join("asal"));
    assert_eq!(original.len(), messages);
    let in_new = original
        .keys()
        .filter(|p| p.contains("/new/") || p.starts_with("new/"));
    assert_eq!(
        in_new.count(),
        corpus.values().flatten().filter(|m| m.new).count()
    );

    let folder = folder_name(&report);
    let first = restore(&s, &folder, "asal", Some("pulih"), None, |_| {})
        .await
        .expect("the restore runs");
    assert_whole(&first, messages, messages);
    assert_eq!(
        message_files(&root.join("pulih")),
        original,
        "every message file came back under its name (flags, new/) with its bytes and mtime"
    );
    // The lowercase letters of the names are keywords only through the folder's
    // dovecot-keywords: each folder has the backup's.
    for kw in files_under(&root.join("asal"))
        .into_iter()
        .filter(|f| f.file_name() == Some("dovecot-keywords".as_ref()))
    {
        let rel = kw.strip_prefix(root.join("asal")).expect("inside");
        assert_eq!(
            std::fs::read_to_string(root.join("pulih").join(rel))
                .ok()
                .as_deref(),
            Some(KEYWORDS),
            "{}",
            rel.display()
        );
    }
    let second = restore(&s, &folder, "asal", Some("pulih"), None, |_| {})
        .await
        .expect("the second restore runs");
    assert_whole(&second, messages, 0);
    assert_eq!(message_files(&root.join("pulih")), original);

    let short = short_by_one(&dir, &s.local_root, &folder, &copy.file);
    let report = restore(&s, &short, "asal", Some("pulih"), None, |_| {})
        .await
        .expect("the restore runs");
    fails_short(&report, messages);
    assert_eq!(message_files(&root.join("pulih")), original);
    let _ = std::fs::remove_dir_all(&dir);
}
