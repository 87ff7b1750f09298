//! The server folder's file list: what step 5 produced and step 6 copies. Names come from the
//! server, so they are parsed into [`ServerName`] before anything local is named after them.

use std::fmt;

use super::local::portable_name;

/// A file name from the server that is safe to write locally: a plain, portable, visible name
/// (no `/`, no control characters, no `:` or other characters NTFS/exFAT refuse, not hidden,
/// not a temporary `.part`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(name: &str) -> Result<ServerName, String> {
        let refuse = |why: &str| Err(format!("refusing the server file name {name:?}: {why}"));
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
pub fn parse_manifest(raw: &[u8]) -> Result<Vec<ServerFile>, String> {
    raw.split(|b| *b == 0)
        .filter(|r| !r.is_empty() && *r != b"\n")
        .map(|r| {
            let text = std::str::from_utf8(r).map_err(|_| "a file name is not UTF-8".to_owned())?;
            let mut parts = text.splitn(3, ' ');
            let (Some(h), Some(s), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("bad manifest line {text:?}"));
            };
            let size = s.parse().map_err(|_| format!("bad size in {text:?}"))?;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("bad checksum in {text:?}"));
            }
            Ok(ServerFile {
                sha256: h.to_owned(),
                size,
                name: ServerName::parse(n)?,
            })
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
