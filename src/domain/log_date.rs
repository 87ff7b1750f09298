//! The date a `/log` (or `mailbox-backup-bot log`) asks for.

use chrono::{Days, NaiveDate};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a date: {0:?} (use today, yesterday, DD-MM-YYYY or YYYY-MM-DD)")]
pub struct BadLogDate(pub String);

/// Parses `today`, `yesterday` (also `hari ini`, `kemarin`), `DD-MM-YYYY` or `YYYY-MM-DD`;
/// an empty argument means today. `today` is the date in the configured time zone.
pub fn parse_log_date(arg: &str, today: NaiveDate) -> Result<NaiveDate, BadLogDate> {
    let arg = arg.trim();
    // Words in any case, with any spacing: `hari ini`, `Hari  Ini`, `hari-ini`.
    let words = arg
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match words.as_str() {
        "" | "today" | "hari ini" | "hariini" => return Ok(today),
        "yesterday" | "kemarin" => {
            return today
                .checked_sub_days(Days::new(1))
                .ok_or_else(|| BadLogDate(arg.to_owned()))
        }
        _ => {}
    }
    NaiveDate::parse_from_str(arg, "%d-%m-%Y")
        .or_else(|_| NaiveDate::parse_from_str(arg, "%Y-%m-%d"))
        .ok()
        .filter(|d| (1970..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| BadLogDate(arg.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).expect("valid")
    }

    #[test]
    fn words_and_both_date_formats_are_understood() {
        let y = NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid");
        assert_eq!(parse_log_date("", today()), Ok(today()));
        assert_eq!(parse_log_date("today", today()), Ok(today()));
        assert_eq!(parse_log_date("Kemarin", today()), Ok(y));
        assert_eq!(parse_log_date("kemarin", today()), Ok(y));
        assert_eq!(parse_log_date("hari ini", today()), Ok(today()));
        assert_eq!(parse_log_date(" Hari  Ini ", today()), Ok(today()));
        assert_eq!(parse_log_date("hari-ini", today()), Ok(today()));
        assert_eq!(parse_log_date("yesterday", today()), Ok(y));
        assert_eq!(parse_log_date("23-11-2026", today()), Ok(y));
        assert_eq!(parse_log_date("2026-11-23", today()), Ok(y));
    }

    #[test]
    fn impossible_and_malformed_dates_are_refused() {
        for bad in [
            "31-02-2026",
            "2026-13-01",
            "besok",
            "24/11/2026",
            "24-11-26x",
            "1-1-0",
            "hari",
            "ini hari",
        ] {
            assert_eq!(
                parse_log_date(bad, today()),
                Err(BadLogDate(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
