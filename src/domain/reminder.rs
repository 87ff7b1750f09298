//! When the Kasubdit is reminded that no backup has been received for a while: no I/O, the
//! time passed in.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// What the decision needs, read from the database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReminderFacts {
    /// The local day the last backup was received (step 7 done), if any.
    pub last_received: Option<NaiveDate>,
    /// The local day the bot was set up: the count starts there when nothing was received yet.
    pub since: NaiveDate,
    /// An order is under way: it is being done, no reminder.
    pub order_active: bool,
    /// Today's reminder was already sent.
    pub sent_today: bool,
}

/// Whether a reminder is due at local time `now`, and for how many days without a received
/// backup. `after_days` 0 turns reminders off. Due once a day from `at` on: a bot that was down
/// at `at` sends it when it is back the same day.
pub fn reminder_due(
    now: NaiveDateTime,
    at: NaiveTime,
    after_days: u32,
    facts: ReminderFacts,
) -> Option<u32> {
    if after_days == 0 || facts.order_active || facts.sent_today || now.time() < at {
        return None;
    }
    let from = facts.last_received.unwrap_or(facts.since);
    let days = u32::try_from((now.date() - from).num_days()).ok()?;
    (days >= after_days).then_some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("valid")
    }

    fn at(d: u32, h: u32, m: u32) -> NaiveDateTime {
        day(d).and_hms_opt(h, m, 0).expect("valid")
    }

    fn nine() -> NaiveTime {
        NaiveTime::from_hms_opt(9, 0, 0).expect("valid")
    }

    fn facts(last: Option<u32>) -> ReminderFacts {
        ReminderFacts {
            last_received: last.map(|d| NaiveDate::from_ymd_opt(2026, 10, d).expect("valid")),
            since: day(1),
            order_active: false,
            sent_today: false,
        }
    }

    #[test]
    fn due_from_the_hour_on_after_the_days_have_passed() {
        // Received on 20 October: 30 days later is 19 November.
        assert_eq!(
            reminder_due(at(19, 9, 0), nine(), 30, facts(Some(20))),
            Some(30)
        );
        assert_eq!(
            reminder_due(at(19, 8, 59), nine(), 30, facts(Some(20))),
            None
        );
        assert_eq!(
            reminder_due(at(18, 23, 0), nine(), 30, facts(Some(20))),
            None
        );
        // Down at nine, back at four: still today's.
        assert_eq!(
            reminder_due(at(25, 16, 0), nine(), 30, facts(Some(20))),
            Some(36)
        );
    }

    #[test]
    fn not_twice_a_day_not_during_an_order_not_when_off() {
        let sent = ReminderFacts {
            sent_today: true,
            ..facts(Some(1))
        };
        assert_eq!(reminder_due(at(25, 10, 0), nine(), 30, sent), None);
        let active = ReminderFacts {
            order_active: true,
            ..facts(Some(1))
        };
        assert_eq!(reminder_due(at(25, 10, 0), nine(), 30, active), None);
        assert_eq!(reminder_due(at(25, 10, 0), nine(), 0, facts(Some(1))), None);
    }

    #[test]
    fn without_any_backup_the_days_count_from_the_set_up() {
        assert_eq!(reminder_due(at(30, 9, 0), nine(), 30, facts(None)), None);
        let later = NaiveDate::from_ymd_opt(2026, 12, 1)
            .expect("valid")
            .and_hms_opt(9, 0, 0)
            .expect("valid");
        assert_eq!(reminder_due(later, nine(), 30, facts(None)), Some(30));
    }
}
