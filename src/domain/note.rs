//! A note given with a command (`/order_backup [note]`, `/cancel [reason]`): parsed once, so a
//! note that exists can be stored and shown as it is.

/// The longest note kept, in characters.
pub const NOTE_MAX_CHARS: usize = 500;

/// Why a note was refused. Nothing is cut or changed silently: the sender is told and types it
/// again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadNote {
    #[error("the note has {chars} characters; at most {max} are kept")]
    TooLong { chars: usize, max: usize },
    /// A control character (NUL and the like), which PostgreSQL or a reader cannot take. Line
    /// breaks and tabs are fine.
    #[error("the note holds a control character (U+{0:04X})")]
    ControlCharacter(u32),
}

/// The note in `arg`: `None` when empty, refused when too long or holding a control character.
pub fn parse_note(arg: &str) -> Result<Option<String>, BadNote> {
    let arg = arg.trim();
    if let Some(c) = arg
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(BadNote::ControlCharacter(u32::from(c)));
    }
    let chars = arg.chars().count();
    if chars > NOTE_MAX_CHARS {
        return Err(BadNote::TooLong {
            chars,
            max: NOTE_MAX_CHARS,
        });
    }
    Ok((!arg.is_empty()).then(|| arg.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_note_is_none_and_a_normal_one_is_kept_as_written() {
        assert_eq!(parse_note("  "), Ok(None));
        assert_eq!(
            parse_note(" backup bulanan\nsebelum migrasi "),
            Ok(Some("backup bulanan\nsebelum migrasi".into()))
        );
    }

    #[test]
    fn a_note_at_the_limit_is_kept_and_one_over_it_is_refused_with_the_limit() {
        let at = "é".repeat(NOTE_MAX_CHARS);
        assert_eq!(parse_note(&at), Ok(Some(at.clone())));
        assert_eq!(
            parse_note(&format!("{at}x")),
            Err(BadNote::TooLong {
                chars: NOTE_MAX_CHARS + 1,
                max: NOTE_MAX_CHARS
            })
        );
    }

    #[test]
    fn nul_and_other_control_characters_are_refused() {
        assert_eq!(parse_note("a\0b"), Err(BadNote::ControlCharacter(0)));
        assert_eq!(
            parse_note("a\u{1b}[31m"),
            Err(BadNote::ControlCharacter(0x1b))
        );
        assert_eq!(parse_note("a\u{7f}"), Err(BadNote::ControlCharacter(0x7f)));
        assert_eq!(parse_note("a\tb"), Ok(Some("a\tb".into())));
    }
}
