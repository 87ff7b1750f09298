//! Just enough IMAP (RFC 3501) to read a whole mailbox from the test Dovecot: every folder, every
//! message's bytes, flags and internal date. Used to prove a restored backup equals the original.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use sha2::{Digest, Sha256};

pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

/// One untagged response line, with the literals (`{n}` blocks) it carried.
struct Line {
    text: String,
    literals: Vec<Vec<u8>>,
}

/// Folder → sorted list of (SHA-256 of the message, its flags sorted).
pub type MailboxContents = BTreeMap<String, Vec<(String, Vec<String>)>>;

/// One message as [`Imap::dated_contents`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dated {
    pub sha256: String,
    /// Sorted, `\Recent` left out.
    pub flags: Vec<String>,
    /// INTERNALDATE, as seconds since the epoch (the server's time zone taken out).
    pub internal_date: i64,
}

/// Folder → sorted list of its messages with their internal dates.
pub type DatedContents = BTreeMap<String, Vec<Dated>>;

impl Imap {
    pub fn login(port: u16, user: &str, password: &str) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("IMAP connects");
        let mut imap = Imap {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            tag: 0,
        };
        let greeting = imap.read_line().text;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        imap.command(&format!("LOGIN {} {}", quote(user), quote(password)));
        imap
    }

    /// Every folder with every message, as its SHA-256 and flags (`\Recent` left out: it is
    /// per-session state, not part of the mailbox).
    pub fn contents(&mut self) -> MailboxContents {
        self.dated_contents()
            .into_iter()
            .map(|(folder, messages)| {
                let mut plain: Vec<(String, Vec<String>)> =
                    messages.into_iter().map(|m| (m.sha256, m.flags)).collect();
                plain.sort();
                (folder, plain)
            })
            .collect()
    }

    /// [`contents`](Self::contents) with each message's INTERNALDATE as well.
    pub fn dated_contents(&mut self) -> DatedContents {
        let mut out = DatedContents::new();
        let folders: Vec<String> = self
            .command(r#"LIST "" "*""#)
            .iter()
            .filter(|l| l.text.starts_with("* LIST"))
            // A parent made only by its children (`Arsip` of `Arsip/2024`) holds nothing.
            .filter(|l| {
                let flags = l.text.to_ascii_lowercase();
                !flags.contains("\\noselect") && !flags.contains("\\nonexistent")
            })
            .map(list_name)
            .collect();
        for folder in folders {
            let exists = self
                .command(&format!("SELECT {}", quote(&folder)))
                .iter()
                .find_map(|l| {
                    l.text
                        .strip_suffix(" EXISTS")?
                        .strip_prefix("* ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0u32);
            if exists == 0 {
                out.insert(folder, Vec::new());
                continue;
            }
            let mut messages: Vec<Dated> = self
                .command("FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])")
                .iter()
                .filter(|l| l.text.contains(" FETCH ") && !l.literals.is_empty())
                .map(|l| Dated {
                    sha256: hex(&Sha256::digest(&l.literals[0])),
                    flags: flags(&l.text),
                    internal_date: internal_date(&l.text),
                })
                .collect();
            messages.sort();
            out.insert(folder, messages);
        }
        out
    }

    fn command(&mut self, command: &str) -> Vec<Line> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").expect("IMAP write");
        let mut lines = Vec::new();
        loop {
            let line = self.read_line();
            if let Some(rest) = line.text.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "IMAP {command}: {rest}");
                return lines;
            }
            lines.push(line);
        }
    }

    /// A response line; a line ending in `{n}` is followed by n bytes and then more of the line.
    fn read_line(&mut self) -> Line {
        let mut text = String::new();
        let mut literals = Vec::new();
        loop {
            let mut raw = Vec::new();
            self.reader.read_until(b'\n', &mut raw).expect("IMAP read");
            assert!(!raw.is_empty(), "IMAP server closed the connection");
            let part = String::from_utf8_lossy(&raw).trim_end().to_owned();
            let literal = part
                .strip_suffix('}')
                .and_then(|p| p.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            text.push_str(&part);
            match literal {
                Some(n) => {
                    let mut bytes = vec![0; n];
                    self.reader.read_exact(&mut bytes).expect("IMAP literal");
                    literals.push(bytes);
                }
                None => return Line { text, literals },
            }
        }
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The folder name of `* LIST (flags) "delim" name`.
fn list_name(line: &Line) -> String {
    if let Some(lit) = line.literals.first() {
        return String::from_utf8_lossy(lit).into_owned();
    }
    let after_flags = line.text.split_once(") ").map(|x| x.1).unwrap_or("");
    let name = match after_flags.strip_prefix("NIL ") {
        Some(rest) => rest,
        None => after_flags
            .strip_prefix('"')
            .and_then(|r| r.split_once("\" "))
            .map(|x| x.1)
            .unwrap_or(""),
    };
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => name.to_owned(),
    }
}

fn flags(text: &str) -> Vec<String> {
    let inner = text
        .split_once("FLAGS (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|x| x.0)
        .unwrap_or("");
    let mut flags: Vec<String> = inner
        .split_whitespace()
        .filter(|f| *f != "\\Recent")
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags
}

/// `INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz"` of a FETCH response, as seconds since the epoch.
fn internal_date(text: &str) -> i64 {
    let date = text
        .split_once("INTERNALDATE \"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|x| x.0.trim_start())
        .unwrap_or_else(|| panic!("no INTERNALDATE in {text}"));
    chrono::DateTime::parse_from_str(date, "%d-%b-%Y %H:%M:%S %z")
        .unwrap_or_else(|e| panic!("INTERNALDATE {date:?}: {e}"))
        .timestamp()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
