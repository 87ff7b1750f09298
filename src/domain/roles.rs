//! The three roles of the SOP and who holds them, keyed by numeric Telegram user id.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A Telegram user id. Ids can exceed 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub i64);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Kasubdit Perencanaan: orders the backup, receives the report.
    Kasubdit,
    /// Kasi Portal Web: directs a JFU, receives the report and passes it up.
    Kasi,
    /// Jabatan Fungsional Umum: does the work (the bot does it for them).
    Jfu,
}

/// Who holds which role. One person may hold several.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roster {
    pub kasubdit: BTreeSet<UserId>,
    pub kasi: BTreeSet<UserId>,
    pub jfu: BTreeSet<UserId>,
}

impl Roster {
    pub fn holders(&self, role: Role) -> &BTreeSet<UserId> {
        match role {
            Role::Kasubdit => &self.kasubdit,
            Role::Kasi => &self.kasi,
            Role::Jfu => &self.jfu,
        }
    }

    pub fn has(&self, user: UserId, role: Role) -> bool {
        self.holders(role).contains(&user)
    }

    pub fn roles_of(&self, user: UserId) -> Vec<Role> {
        [Role::Kasubdit, Role::Kasi, Role::Jfu]
            .into_iter()
            .filter(|r| self.has(user, *r))
            .collect()
    }

    pub fn has_any_role(&self, user: UserId) -> bool {
        !self.roles_of(user).is_empty()
    }

    /// Everyone configured, each once.
    pub fn everyone(&self) -> BTreeSet<UserId> {
        self.kasubdit
            .iter()
            .chain(&self.kasi)
            .chain(&self.jfu)
            .copied()
            .collect()
    }

    /// The JFU to direct when none is named: the only one, if there is exactly one.
    pub fn sole_jfu(&self) -> Option<UserId> {
        match self.jfu.len() {
            1 => self.jfu.iter().next().copied(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster {
            kasubdit: [UserId(1)].into(),
            kasi: [UserId(2), UserId(1)].into(),
            jfu: [UserId(3)].into(),
        }
    }

    #[test]
    fn one_person_may_hold_several_roles() {
        assert_eq!(
            roster().roles_of(UserId(1)),
            vec![Role::Kasubdit, Role::Kasi]
        );
        assert_eq!(roster().roles_of(UserId(9)), vec![]);
        assert_eq!(roster().everyone().len(), 3);
    }

    #[test]
    fn the_sole_jfu_is_known_only_when_there_is_exactly_one() {
        assert_eq!(roster().sole_jfu(), Some(UserId(3)));
        let mut two = roster();
        two.jfu.insert(UserId(4));
        assert_eq!(two.sole_jfu(), None);
    }
}
