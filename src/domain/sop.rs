//! The eight steps of the SOP "Backup Mailbox Pada Server Surat Elektronik DJKI" and their standard
//! times ("mutu baku").

use std::fmt;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::roles::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum SopStep {
    /// 1. The Kasubdit orders the Kasi to back up DJKI e-mail.
    Order = 1,
    /// 2. The Kasi directs a JFU to do it.
    Direct = 2,
    /// 3. A folder named by the date on the admin computer or external disk.
    CreateFolder = 3,
    /// 4. Remote login to the mail server.
    RemoteLogin = 4,
    /// 5. The mailbox backup into one folder on the server.
    ServerBackup = 5,
    /// 6. Copy down into the dated folder, then report to the Kasi.
    CopyAndReport = 6,
    /// 7. The report is received (by the Kasi, going up to the Kasubdit).
    Receive = 7,
    /// 8. The report is recorded in the daily activity log.
    DailyLog = 8,
}

impl SopStep {
    pub const ALL: [SopStep; 8] = [
        SopStep::Order,
        SopStep::Direct,
        SopStep::CreateFolder,
        SopStep::RemoteLogin,
        SopStep::ServerBackup,
        SopStep::CopyAndReport,
        SopStep::Receive,
        SopStep::DailyLog,
    ];

    /// The steps the bot does itself for the JFU.
    pub const MACHINE: [SopStep; 4] = [
        SopStep::CreateFolder,
        SopStep::RemoteLogin,
        SopStep::ServerBackup,
        SopStep::CopyAndReport,
    ];

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(n: u8) -> Option<SopStep> {
        SopStep::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// The SOP's standard time for the step.
    pub fn standard_time(self) -> TimeDelta {
        match self {
            SopStep::Order | SopStep::Direct | SopStep::Receive => TimeDelta::minutes(5),
            SopStep::CreateFolder | SopStep::RemoteLogin | SopStep::DailyLog => {
                TimeDelta::minutes(10)
            }
            SopStep::ServerBackup | SopStep::CopyAndReport => TimeDelta::hours(2),
        }
    }

    /// Who performs the step in the SOP (`None`: the record is kept by the bot).
    pub fn actor_role(self) -> Option<Role> {
        match self {
            SopStep::Order => Some(Role::Kasubdit),
            SopStep::Direct | SopStep::Receive => Some(Role::Kasi),
            SopStep::CreateFolder
            | SopStep::RemoteLogin
            | SopStep::ServerBackup
            | SopStep::CopyAndReport => Some(Role::Jfu),
            SopStep::DailyLog => None,
        }
    }

    /// Whether a step that took `took` stayed within the standard time (the boundary counts as within).
    pub fn within_standard(self, took: TimeDelta) -> bool {
        took <= self.standard_time()
    }
}

impl From<SopStep> for u8 {
    fn from(s: SopStep) -> u8 {
        s.number()
    }
}

impl TryFrom<u8> for SopStep {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        SopStep::from_number(n).ok_or_else(|| format!("no SOP step {n}"))
    }
}

impl fmt::Display for SopStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The SOP's total standard time (4 h 45 min).
pub fn total_standard_time() -> TimeDelta {
    SopStep::ALL.iter().map(|s| s.standard_time()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_times_add_up_to_four_hours_forty_five() {
        assert_eq!(total_standard_time(), TimeDelta::minutes(4 * 60 + 45));
        let machine: TimeDelta = SopStep::MACHINE.iter().map(|s| s.standard_time()).sum();
        assert_eq!(machine, TimeDelta::minutes(4 * 60 + 20));
    }

    #[test]
    fn a_step_that_takes_exactly_its_standard_time_is_within_and_one_second_more_is_over() {
        for step in SopStep::ALL {
            assert!(step.within_standard(step.standard_time()), "{step}");
            assert!(
                !step.within_standard(step.standard_time() + TimeDelta::seconds(1)),
                "{step}"
            );
            assert!(step.within_standard(TimeDelta::zero()));
        }
    }

    #[test]
    fn steps_round_trip_through_their_numbers() {
        for step in SopStep::ALL {
            assert_eq!(SopStep::from_number(step.number()), Some(step));
        }
        assert_eq!(SopStep::from_number(0), None);
        assert_eq!(SopStep::from_number(9), None);
    }
}
