//! The restore drill: once every `RESTORE_DRILL_DAYS` (and on demand with `/drill`) one mailbox
//! of the newest verified backup is restored into a scratch place and compared with its archive,
//! so a backup that cannot be restored is found before the day it is needed. This module decides
//! when a drill is due and which mailbox it takes; no I/O, the time and the randomness passed in.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

/// What the decision "is a drill due" needs, read from the database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrillFacts {
    /// The local day the last drill started (scheduled or asked), if any.
    pub last_drill: Option<NaiveDate>,
    /// There is a verified backup to drill.
    pub has_backup: bool,
    /// A backup order or a restore is under way: the drill waits for it (they share the server).
    pub busy: bool,
}

/// Whether a scheduled drill is due at local time `now`: every `every_days` days (0: never), from
/// `at` on, and only when there is a backup and nothing else is under way. The first drill is due
/// as soon as there is a verified backup.
pub fn drill_due(now: NaiveDateTime, at: NaiveTime, every_days: u32, facts: DrillFacts) -> bool {
    if every_days == 0 || !facts.has_backup || facts.busy || now.time() < at {
        return false;
    }
    match facts.last_drill {
        None => true,
        Some(last) => (now.date() - last).num_days() >= i64::from(every_days),
    }
}

/// One mailbox a drill could take, with the last local day it was drilled (any backup).
#[derive(Debug, Clone, PartialEq)]
pub struct DrillCandidate {
    pub account: String,
    pub last_drilled: Option<NaiveDate>,
}

/// The mailbox the drill takes, at random but weighted by how long each went undrilled, so that
/// every mailbox is drilled over time and none waits for ever: a mailbox never drilled weighs as
/// much as one last drilled a year ago. `random` is any uniformly random number.
pub fn choose_mailbox(
    candidates: &[DrillCandidate],
    today: NaiveDate,
    random: u64,
) -> Option<&DrillCandidate> {
    const NEVER_DAYS: u64 = 366;
    let weight = |c: &DrillCandidate| -> u64 {
        match c.last_drilled {
            None => NEVER_DAYS,
            Some(d) => u64::try_from((today - d).num_days())
                .unwrap_or(0)
                .clamp(1, NEVER_DAYS),
        }
    };
    let total: u64 = candidates.iter().map(weight).sum();
    if total == 0 {
        return None;
    }
    let mut pick = random % total;
    candidates.iter().find(|c| {
        let w = weight(c);
        if pick < w {
            true
        } else {
            pick -= w;
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).expect("valid")
    }

    fn seven() -> NaiveTime {
        NaiveTime::from_hms_opt(7, 0, 0).expect("valid")
    }

    fn facts(last: Option<NaiveDate>) -> DrillFacts {
        DrillFacts {
            last_drill: last,
            has_backup: true,
            busy: false,
        }
    }

    #[test]
    fn a_drill_is_due_every_n_days_from_its_hour_when_nothing_else_runs() {
        let now = day(31).and_hms_opt(8, 0, 0).expect("valid");
        assert!(drill_due(now, seven(), 30, facts(None)));
        assert!(drill_due(now, seven(), 30, facts(Some(day(1)))));
        assert!(!drill_due(now, seven(), 30, facts(Some(day(2)))));
        // Off, before its hour, with nothing to drill, or while a backup or restore runs.
        assert!(!drill_due(now, seven(), 0, facts(None)));
        let early = day(31).and_hms_opt(6, 59, 0).expect("valid");
        assert!(!drill_due(early, seven(), 30, facts(None)));
        let none = DrillFacts {
            has_backup: false,
            ..facts(None)
        };
        assert!(!drill_due(now, seven(), 30, none));
        let busy = DrillFacts {
            busy: true,
            ..facts(None)
        };
        assert!(!drill_due(now, seven(), 30, busy));
    }

    #[test]
    fn every_mailbox_is_drilled_over_time_the_longest_waiting_most_often() {
        let c = |a: &str, last: Option<NaiveDate>| DrillCandidate {
            account: a.into(),
            last_drilled: last,
        };
        assert_eq!(choose_mailbox(&[], day(7), 5), None);
        let candidates = [
            c("ani", Some(day(6))),   // weight 1
            c("budi", None),          // weight 366
            c("citra", Some(day(1))), // weight 6
        ];
        let mut seen = std::collections::BTreeMap::new();
        for r in 0..373u64 {
            let got = choose_mailbox(&candidates, day(7), r).expect("one");
            *seen.entry(got.account.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen["ani"], 1);
        assert_eq!(seen["budi"], 366);
        assert_eq!(seen["citra"], 6);
        // Drilled today still has a chance: nobody is left out for ever.
        let today = [c("ani", Some(day(7)))];
        assert_eq!(
            choose_mailbox(&today, day(7), u64::MAX).map(|c| c.account.as_str()),
            Some("ani")
        );
    }
}
