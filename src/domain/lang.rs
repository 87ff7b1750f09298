//! The reader's language, and the one figure every layer shows to people the same way: a size.
//! No I/O.

/// The language of every text the bot writes: Bahasa Indonesia (default) or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

/// A size as a person reads it: B, KB, MB, GB, TB (of 1024), one decimal with the language's
/// decimal mark (`1,5 MB`; English `1.5 MB`).
pub fn bytes(lang: Lang, n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let figure = format!("{v:.1}");
    let figure = match lang {
        Lang::Id => figure.replace('.', ","),
        Lang::En => figure,
    };
    format!("{figure} {}", UNITS[unit])
}
