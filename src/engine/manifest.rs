//! The server folder's file list: what step 5 produced and step 6 copies. Names come from the
//! server, so they are parsed into [`ServerName`] before anything local is named after them.

use std::fmt;

use super::files::portable_name;

/// Why a line the server printed about its files is refused (nothing is named after it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("refusing the server file name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("a file name is not UTF-8")]
    NotUtf8,
    #[error("bad manifest line {0:?}")]
    BadLine(String),
    #[error("bad size in {0:?}")]
    BadSize(String),
    #[error("bad checksum in {0:?}")]
    BadChecksum(String),
    #[error("bad export record {line:?} for {name}")]
    BadRecord { line: String, name: String },
    #[error("bad checksum in {line:?} for {name}")]
    BadRecordChecksum { line: String, name: String },
    #[error("bad size in {line:?} for {name}")]
    BadRecordSize { line: String, name: String },
    #[error("bad export record {0:?}")]
    NoName(String),
}

/// A file name from the server that is safe to write locally: a plain, portable, visible name
/// (no `/`, no control characters, no `:` or other characters NTFS/exFAT refuse, not hidden,
/// not a temporary `.part`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(name: &str) -> Result<ServerName, ManifestError> {
        let refuse = |why: &'static str| {
            Err(ManifestError::BadName {
                name: name.to_owned(),
                why,
            })
        };
        if name.is_empty() || name.len() > 255 {
            return refuse("empty or longer than 255 bytes");
        }
        if name.starts_with('.') {
            return refuse("hidden");
        }
        if name.ends_with(".part") {
            return refuse("a partial file");
        }
        if name.contains('/') || name.chars().any(char::is_control) {
            return refuse("not a plain file name");
        }
        if portable_name(name) != name {
            return refuse("not portable to NTFS/exFAT");
        }
        Ok(ServerName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One archive on the server, as the manifest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFile {
    pub sha256: String,
    pub size: u64,
    pub name: ServerName,
}

/// Parses `sha256 size name\0…` (what [`super::server::MANIFEST`] prints).
pub fn parse_manifest(raw: &[u8]) -> Result<Vec<ServerFile>, ManifestError> {
    raw.split(|b| *b == 0)
        .filter(|r| !r.is_empty() && *r != b"\n")
        .map(|r| {
            let text = std::str::from_utf8(r).map_err(|_| ManifestError::NotUtf8)?;
            let mut parts = text.splitn(3, ' ');
            let (Some(h), Some(s), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ManifestError::BadLine(text.to_owned()));
            };
            let size = s
                .parse()
                .map_err(|_| ManifestError::BadSize(text.to_owned()))?;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ManifestError::BadChecksum(text.to_owned()));
            }
            Ok(ServerFile {
                sha256: h.to_owned(),
                size,
                name: ServerName::parse(n)?,
            })
        })
        .collect()
}

/// The server's own count of a mailbox's messages, taken just before and just after its export
/// (mail that arrives or is deleted meanwhile moves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerCount {
    pub before: u64,
    pub after: u64,
}

impl ServerCount {
    /// Whether an archive of `messages` messages is what the server held during the export.
    pub fn accepts(&self, messages: u64) -> bool {
        (self.before.min(self.after)..=self.before.max(self.after)).contains(&messages)
    }
}

impl fmt::Display for ServerCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.before == self.after {
            write!(f, "{}", self.after)
        } else {
            write!(f, "{}–{}", self.before, self.after)
        }
    }
}

/// One finished export's record: the archive and the server's count of its mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub file: ServerFile,
    pub count: Option<ServerCount>,
}

/// Parses `SHA256 SIZE BEFORE AFTER` (what [`super::server::EXPORT_ONE`] prints) for `name`.
pub fn parse_record(line: &str, name: &str) -> Result<ExportRecord, ManifestError> {
    let (line_, name_) = (line.to_owned(), name.to_owned());
    let mut parts = line.split_whitespace();
    let (Some(h), Some(s), Some(b), Some(a)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ManifestError::BadRecord {
            line: line_,
            name: name_,
        });
    };
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ManifestError::BadRecordChecksum {
            line: line_,
            name: name_,
        });
    }
    let size = s.parse().map_err(|_| ManifestError::BadRecordSize {
        line: line_,
        name: name_,
    })?;
    let count = match (b.parse(), a.parse()) {
        (Ok(before), Ok(after)) => Some(ServerCount { before, after }),
        _ => None,
    };
    Ok(ExportRecord {
        file: ServerFile {
            sha256: h.to_owned(),
            size,
            name: ServerName::parse(name)?,
        },
        count,
    })
}

/// Parses `SHA256 SIZE BEFORE AFTER NAME\0…` (what [`super::server::SUMS`] prints).
pub fn parse_records(raw: &[u8]) -> Result<Vec<ExportRecord>, ManifestError> {
    raw.split(|b| *b == 0)
        .filter(|r| !r.is_empty() && *r != b"\n")
        .map(|r| {
            let text = std::str::from_utf8(r).map_err(|_| ManifestError::NotUtf8)?;
            let mut parts = text.splitn(5, ' ');
            let fields: Vec<&str> = parts.by_ref().take(4).collect();
            let name = parts
                .next()
                .ok_or_else(|| ManifestError::NoName(text.to_owned()))?;
            parse_record(&fields.join(" "), name)
        })
        .collect()
}

/// Parses the failures recorded during step 5: `account\terror\0…`.
pub fn parse_failures(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|r| {
            let t = String::from_utf8_lossy(r);
            let (a, e) = t.split_once('\t')?;
            Some((a.trim().to_owned(), e.to_owned()))
        })
        .collect()
}

/// The account an archive holds, from its file name.
pub fn account_of(file: &str) -> String {
    file.trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_owned()
}

/// `SHA256SUMS` text, readable by `sha256sum -c`.
pub fn sha256sums(files: &[ServerFile]) -> String {
    files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_manifest_is_parsed_and_garbage_refused() {
        let h = "a".repeat(64);
        let raw = format!("{h} 10 ani@djki.go.id.tar.gz\0{h} 0 with  two spaces.tar.gz\0");
        let files = parse_manifest(raw.as_bytes()).expect("parses");
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].name.as_str(), "with  two spaces.tar.gz");
        assert_eq!(files[1].size, 0);
        assert!(parse_manifest(b"zz 1 x\0").is_err());
        assert!(parse_manifest(format!("{h} x y\0").as_bytes()).is_err());
        assert_eq!(
            sha256sums(&files[1..]),
            format!("{h}  with  two spaces.tar.gz\n"),
            "runs of spaces in a name are kept"
        );
    }

    #[test]
    fn export_records_carry_the_servers_count_when_it_was_taken() {
        let h = "b".repeat(64);
        let raw = format!("{h} 10 3 4 ani@djki.go.id.tar.gz\0{h} 7 - - Surat Masuk.tar.gz\0");
        let recs = parse_records(raw.as_bytes()).expect("parses");
        assert_eq!(
            recs[0].count,
            Some(ServerCount {
                before: 3,
                after: 4
            })
        );
        assert_eq!(recs[0].file.size, 10);
        assert_eq!(recs[1].count, None);
        assert_eq!(recs[1].file.name.as_str(), "Surat Masuk.tar.gz");
        assert!(parse_records(b"zz 1 - - x\0").is_err());
        assert!(parse_record(&format!("{h} 5"), "x").is_err());
        let c = ServerCount {
            before: 4,
            after: 3,
        };
        assert!(c.accepts(3) && c.accepts(4) && !c.accepts(5) && !c.accepts(2));
        assert_eq!(c.to_string(), "4–3");
        assert_eq!(
            ServerCount {
                before: 7,
                after: 7
            }
            .to_string(),
            "7"
        );
    }

    #[test]
    fn every_unsafe_name_is_refused_whatever_its_extension() {
        for bad in [
            "a:b.tgz",
            "CON.tgz",
            "line\nbreak.tgz",
            "../x.tgz",
            "a/b.tar.gz",
            ".hidden.tgz",
            "x.tgz.part",
            "",
            "tab\there.tar.gz",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "ani@djki.go.id.tgz",
            "Surat Masuk.tar.gz",
            "ünï@x.tgz",
            "a;b.tar.gz",
        ] {
            assert_eq!(ServerName::parse(good).expect(good).as_str(), good);
        }
    }
}
