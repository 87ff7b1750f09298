//! The date or month a `/log`, `/export` (or `mailbox-backup-bot log`/`export`) asks for.

use chrono::{Datelike, Days, Months, NaiveDate};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a date: {0:?} (use today, yesterday, DD-MM-YYYY or YYYY-MM-DD)")]
pub struct BadLogDate(pub String);

/// Parses `today`, `yesterday` (also `hari ini`, `kemarin`), `DD-MM-YYYY` or `YYYY-MM-DD`;
/// an empty argument means today. `today` is the date in the configured time zone.
pub fn parse_log_date(arg: &str, today: NaiveDate) -> Result<NaiveDate, BadLogDate> {
    let arg = arg.trim();
    // Words in any case, with any spacing: `hari ini`, `Hari  Ini`, `hari-ini`.
    match words(arg).as_str() {
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
        .filter(|d| (1970..=9999).contains(&d.year()))
        .ok_or_else(|| BadLogDate(arg.to_owned()))
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The first day of the next month (the end, exclusive).
    pub fn next_first_day(self) -> NaiveDate {
        self.first_day()
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    }
}

/// What `/log` shows: one day, or a whole month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPeriod {
    Day(NaiveDate),
    Month(Month),
}

impl LogPeriod {
    /// The first day and the day after the last.
    pub fn days(self) -> (NaiveDate, NaiveDate) {
        match self {
            LogPeriod::Day(d) => (d, d.succ_opt().unwrap_or(d)),
            LogPeriod::Month(m) => (m.first_day(), m.next_first_day()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a month: {0:?} (use MM-YYYY, YYYY-MM, this month or last month)")]
pub struct BadMonth(pub String);

/// Parses `MM-YYYY` or `YYYY-MM` (also `bulan ini`/`this month`, `bulan lalu`/`last month`);
/// an empty argument means this month.
pub fn parse_month(arg: &str, today: NaiveDate) -> Result<Month, BadMonth> {
    let arg = arg.trim();
    let bad = || BadMonth(arg.to_owned());
    match words(arg).as_str() {
        "" | "this month" | "bulan ini" => return Ok(Month::of(today)),
        "last month" | "bulan lalu" => {
            return today
                .checked_sub_months(Months::new(1))
                .map(Month::of)
                .ok_or_else(bad)
        }
        _ => {}
    }
    let (a, b) = arg.split_once(['-', '/']).ok_or_else(bad)?;
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<i32>().ok())
            .flatten()
    };
    let (month, year) = match (number(a), number(b)) {
        (Some(m), Some(y)) if a.len() <= 2 && b.len() == 4 => (m, y),
        (Some(y), Some(m)) if a.len() == 4 && b.len() <= 2 => (m, y),
        _ => return Err(bad()),
    };
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m));
    match month {
        Some(month) if (1970..=9999).contains(&year) => Ok(Month { year, month }),
        _ => Err(bad()),
    }
}

/// A day (as [`parse_log_date`]) or a month (as [`parse_month`], but never empty: an empty
/// argument is today).
pub fn parse_log_period(arg: &str, today: NaiveDate) -> Result<LogPeriod, BadLogDate> {
    if let Ok(d) = parse_log_date(arg, today) {
        return Ok(LogPeriod::Day(d));
    }
    parse_month(arg, today)
        .map(LogPeriod::Month)
        .map_err(|_| BadLogDate(arg.trim().to_owned()))
}

/// Lower-case words, however spaced or joined (`Hari  Ini`, `hari-ini`).
fn words(arg: &str) -> String {
    arg.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_in_both_orders_and_words() {
        let nov = Month {
            year: 2026,
            month: 11,
        };
        let oct = Month {
            year: 2026,
            month: 10,
        };
        assert_eq!(parse_month("", today()), Ok(nov));
        assert_eq!(parse_month("11-2026", today()), Ok(nov));
        assert_eq!(parse_month("2026-11", today()), Ok(nov));
        assert_eq!(parse_month("10/2026", today()), Ok(oct));
        assert_eq!(parse_month("Bulan Lalu", today()), Ok(oct));
        assert_eq!(parse_month("this month", today()), Ok(nov));
        for bad in [
            "13-2026",
            "0-2026",
            "11-26",
            "2026",
            "x-2026",
            "11-2026-1",
            "+1-2026",
        ] {
            assert!(parse_month(bad, today()).is_err(), "{bad}");
        }
        assert_eq!(
            nov.next_first_day(),
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("valid")
        );
        let dec = Month {
            year: 2026,
            month: 12,
        };
        assert_eq!(
            dec.next_first_day(),
            NaiveDate::from_ymd_opt(2027, 1, 1).expect("valid")
        );
    }

    #[test]
    fn a_log_period_is_a_day_or_a_month() {
        assert_eq!(parse_log_period("", today()), Ok(LogPeriod::Day(today())));
        assert_eq!(
            parse_log_period("11-2026", today()),
            Ok(LogPeriod::Month(Month {
                year: 2026,
                month: 11
            }))
        );
        assert_eq!(
            parse_log_period("24-11-2026", today()),
            Ok(LogPeriod::Day(today()))
        );
        assert!(parse_log_period("besok", today()).is_err());
    }

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
