//! Just enough IMAP (RFC 3501) to read a whole mailbox from the test Dovecot: every folder, every
//! message's bytes and flags. Used to prove a restored backup equals the original.

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
        let mut out = MailboxContents::new();
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
            let mut messages: Vec<(String, Vec<String>)> = self
                .command("FETCH 1:* (FLAGS BODY.PEEK[])")
                .iter()
                .filter(|l| l.text.contains(" FETCH ") && !l.literals.is_empty())
                .map(|l| {
                    let sha = hex(&Sha256::digest(&l.literals[0]));
                    (sha, flags(&l.text))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
