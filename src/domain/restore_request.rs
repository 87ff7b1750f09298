//! A restore asked in the chat: who may ask, who may approve, and what a request goes through.
//! Two people for an operation that writes into a mailbox: a Kasi asks, a Kasubdit who is not
//! the asker approves or refuses. No I/O.

use super::roles::{Role, Roster, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStatus {
    Asked,
    Refused,
    Running,
    Done,
    Failed,
    /// Taken back by the asker or a Kasubdit before anyone decided.
    Withdrawn,
    /// Nobody decided within `RESTORE_REQUEST_EXPIRY_SECS`.
    Expired,
}

impl RestoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreStatus::Asked => "asked",
            RestoreStatus::Refused => "refused",
            RestoreStatus::Running => "running",
            RestoreStatus::Done => "done",
            RestoreStatus::Failed => "failed",
            RestoreStatus::Withdrawn => "withdrawn",
            RestoreStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<RestoreStatus> {
        [
            RestoreStatus::Asked,
            RestoreStatus::Refused,
            RestoreStatus::Running,
            RestoreStatus::Done,
            RestoreStatus::Failed,
            RestoreStatus::Withdrawn,
            RestoreStatus::Expired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Why an approval (or refusal) press is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRefused {
    NotKasubdit,
    OwnRequest,
    NotWaiting(RestoreStatus),
    /// A withdrawal by someone who neither asked nor is a Kasubdit.
    NotYours,
}

/// What a press of "approve" (`approve`) or "refuse" by `by` makes of a request asked by
/// `asked_by` and standing at `status`.
pub fn decide(
    roster: &Roster,
    status: RestoreStatus,
    asked_by: UserId,
    by: UserId,
    approve: bool,
) -> Result<RestoreStatus, DecisionRefused> {
    if !roster.has(by, Role::Kasubdit) {
        return Err(DecisionRefused::NotKasubdit);
    }
    if by == asked_by {
        return Err(DecisionRefused::OwnRequest);
    }
    if status != RestoreStatus::Asked {
        return Err(DecisionRefused::NotWaiting(status));
    }
    Ok(if approve {
        RestoreStatus::Running
    } else {
        RestoreStatus::Refused
    })
}

/// A withdrawal of request `asked_by` (standing at `status`) by `by`: the asker or any Kasubdit,
/// while nobody has decided.
pub fn withdraw(
    roster: &Roster,
    status: RestoreStatus,
    asked_by: UserId,
    by: UserId,
) -> Result<RestoreStatus, DecisionRefused> {
    if by != asked_by && !roster.has(by, Role::Kasubdit) {
        return Err(DecisionRefused::NotYours);
    }
    if status != RestoreStatus::Asked {
        return Err(DecisionRefused::NotWaiting(status));
    }
    Ok(RestoreStatus::Withdrawn)
}

/// Whether someone can decide a request of `asked_by`: a Kasubdit who is not the asker. When
/// no one can, the request is refused at once rather than left waiting forever.
pub fn can_be_decided(roster: &Roster, asked_by: UserId) -> bool {
    roster.kasubdit.iter().any(|k| *k != asked_by)
}

/// `/restore batal` (or `/restore cancel`): a withdrawal of the open request.
pub fn is_withdrawal(arg: &str) -> bool {
    let arg = arg.trim();
    arg.eq_ignore_ascii_case("batal") || arg.eq_ignore_ascii_case("cancel")
}

/// The account of a request that restores every account of a backup folder (`/restore FOLDER
/// semua`): no account is named `*`.
pub const EVERY_ACCOUNT: &str = "*";

/// `/restore FOLDER semua` (or `all`): the folder whose every account is made again when
/// missing, then restored. `None` for anything else.
pub fn parse_restore_all(arg: &str) -> Option<String> {
    match arg.split_whitespace().collect::<Vec<_>>().as_slice() {
        [folder, every]
            if (every.eq_ignore_ascii_case("semua") || every.eq_ignore_ascii_case("all"))
                && parse_restore_args(arg).is_some() =>
        {
            Some(folder.to_string())
        }
        _ => None,
    }
}

/// `/restore FOLDER ACCOUNT [TARGET]`: the folder, the account, and the target (the account
/// itself when not given). `None` for anything else.
pub fn parse_restore_args(arg: &str) -> Option<(String, String, String)> {
    let words: Vec<&str> = arg.split_whitespace().collect();
    // No control characters, and none of the invisible ones that turn or hide text (bidi
    // controls, zero-width characters): what the approver reads is what is restored.
    let invisible = |c: char| matches!(c, '\u{061C}' | '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let plain = |w: &str| {
        !w.is_empty()
            && w.len() <= 200
            && !w.starts_with('-')
            && w.chars().all(|c| !c.is_control() && !invisible(c))
    };
    match words.as_slice() {
        [folder, account] if plain(folder) && plain(account) => {
            Some((folder.to_string(), account.to_string(), account.to_string()))
        }
        [folder, account, into] if plain(folder) && plain(account) && plain(into) => {
            Some((folder.to_string(), account.to_string(), into.to_string()))
        }
        _ => None,
    }
}

/// Callback data of the approval buttons: `restore:<id>:ok` or `restore:<id>:no`.
pub fn restore_button_data(id: i64, approve: bool) -> String {
    format!("restore:{id}:{}", if approve { "ok" } else { "no" })
}

pub fn parse_restore_button(data: &str) -> Option<(i64, bool)> {
    let rest = data.strip_prefix("restore:")?;
    let (id, what) = rest.split_once(':')?;
    let approve = match what {
        "ok" => true,
        "no" => false,
        _ => return None,
    };
    Some((id.parse().ok()?, approve))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster {
            kasubdit: [UserId(1), UserId(4)].into(),
            kasi: [UserId(2), UserId(4)].into(),
            jfu: [UserId(3)].into(),
        }
    }

    #[test]
    fn only_another_kasubdit_decides_and_only_once() {
        let r = roster();
        let asked = RestoreStatus::Asked;
        assert_eq!(
            decide(&r, asked, UserId(2), UserId(1), true),
            Ok(RestoreStatus::Running)
        );
        assert_eq!(
            decide(&r, asked, UserId(2), UserId(1), false),
            Ok(RestoreStatus::Refused)
        );
        assert_eq!(
            decide(&r, asked, UserId(2), UserId(2), true),
            Err(DecisionRefused::NotKasubdit)
        );
        assert_eq!(
            decide(&r, asked, UserId(2), UserId(3), true),
            Err(DecisionRefused::NotKasubdit)
        );
        // Someone holding both roles cannot approve their own request.
        assert_eq!(
            decide(&r, asked, UserId(4), UserId(4), true),
            Err(DecisionRefused::OwnRequest)
        );
        assert_eq!(
            decide(&r, RestoreStatus::Running, UserId(2), UserId(1), true),
            Err(DecisionRefused::NotWaiting(RestoreStatus::Running))
        );
    }

    #[test]
    fn the_asker_or_a_kasubdit_withdraws_and_nobody_waits_for_no_one() {
        let r = roster();
        let asked = RestoreStatus::Asked;
        assert_eq!(
            withdraw(&r, asked, UserId(2), UserId(2)),
            Ok(RestoreStatus::Withdrawn)
        );
        assert_eq!(
            withdraw(&r, asked, UserId(2), UserId(1)),
            Ok(RestoreStatus::Withdrawn)
        );
        assert_eq!(
            withdraw(&r, asked, UserId(2), UserId(3)),
            Err(DecisionRefused::NotYours)
        );
        assert_eq!(
            withdraw(&r, RestoreStatus::Running, UserId(2), UserId(2)),
            Err(DecisionRefused::NotWaiting(RestoreStatus::Running))
        );
        assert!(can_be_decided(&r, UserId(2)));
        assert!(can_be_decided(&r, UserId(4)), "another Kasubdit (1) can");
        let alone = Roster {
            kasubdit: [UserId(4)].into(),
            kasi: [UserId(4)].into(),
            jfu: [UserId(3)].into(),
        };
        assert!(!can_be_decided(&alone, UserId(4)));
        assert!(
            is_withdrawal(" Batal ") && is_withdrawal("cancel") && !is_withdrawal("25-11-2026 x")
        );
        for s in ["withdrawn", "expired"] {
            assert_eq!(RestoreStatus::parse(s).map(|x| x.as_str()), Some(s));
        }
    }

    #[test]
    fn a_whole_folder_is_semua_or_all_after_a_plain_folder_name() {
        assert_eq!(
            parse_restore_all("25-11-2026 semua"),
            Some("25-11-2026".into())
        );
        assert_eq!(
            parse_restore_all("25-11-2026 ALL"),
            Some("25-11-2026".into())
        );
        assert_eq!(parse_restore_all("25-11-2026 ani@djki.go.id"), None);
        assert_eq!(parse_restore_all("25-11-2026 semua x@djki.go.id"), None);
        assert_eq!(parse_restore_all("-x semua"), None);
        assert_eq!(parse_restore_all("semua"), None);
    }

    #[test]
    fn arguments_and_buttons_parse() {
        assert_eq!(
            parse_restore_args("25-11-2026 ani@djki.go.id"),
            Some((
                "25-11-2026".into(),
                "ani@djki.go.id".into(),
                "ani@djki.go.id".into()
            ))
        );
        assert_eq!(
            parse_restore_args(" 25-11-2026  ani@x  budi@x "),
            Some(("25-11-2026".into(), "ani@x".into(), "budi@x".into()))
        );
        for bad in [
            "",
            "25-11-2026",
            "a b c d",
            "--into x y",
            "a\u{7} b",
            "25-11-2026 ani\u{202E}@x",
            "25-11-2026 a\u{200B}ni@x",
        ] {
            assert_eq!(parse_restore_args(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_restore_button(&restore_button_data(7, true)),
            Some((7, true))
        );
        assert_eq!(
            parse_restore_button(&restore_button_data(7, false)),
            Some((7, false))
        );
        for bad in ["restore:x:ok", "restore:7:maybe", "direct:1:2", "restore:7"] {
            assert_eq!(parse_restore_button(bad), None, "{bad}");
        }
    }
}
