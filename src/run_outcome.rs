//! What a backup run ended with, as stored with its order (JSON) and read by the report.

use serde::{Deserialize, Serialize};

use crate::engine::{BackupReport, EngineError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Completed(BackupReport),
    Stopped(EngineError),
    /// The bot could not run or resume it.
    Abandoned(Abandon),
}

/// Why a run was abandoned, rendered in the reader's language when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Abandon {
    /// The bot restarted during the run without a configured backup engine.
    RestartedWithoutEngine,
    /// A text stored by an older bot, already in the language of its day.
    #[serde(untagged)]
    Said(String),
}

impl RunOutcome {
    /// How it failed, in plain English, as evidence kept with the order (`orders.reason`); the
    /// chat renders the outcome itself in the reader's language.
    pub fn evidence(&self) -> Option<String> {
        match self {
            RunOutcome::Completed(r) if r.all_verified() => None,
            RunOutcome::Completed(r) => {
                // The first names only: the report's document lists every one.
                let failed: Vec<&str> = r.failed().map(|m| m.account.as_str()).collect();
                let named = failed
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = failed.len().saturating_sub(20);
                Some(format!(
                    "{} of {} mailboxes failed: {named}{}",
                    failed.len(),
                    r.mailboxes.len(),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ))
            }
            RunOutcome::Stopped(e) => Some(e.to_string()),
            RunOutcome::Abandoned(Abandon::RestartedWithoutEngine) => {
                Some("the bot restarted without a configured backup engine".into())
            }
            RunOutcome::Abandoned(Abandon::Said(text)) => Some(text.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_run_reads_typed_and_as_older_bots_stored_it() {
        let typed = RunOutcome::Abandoned(Abandon::RestartedWithoutEngine);
        let json = serde_json::to_value(&typed).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"abandoned": "restarted_without_engine"})
        );
        let back: RunOutcome = serde_json::from_value(json).expect("typed");
        assert!(matches!(
            back,
            RunOutcome::Abandoned(Abandon::RestartedWithoutEngine)
        ));
        let old: RunOutcome =
            serde_json::from_value(serde_json::json!({"abandoned": "bot dimulai ulang"}))
                .expect("an older row");
        assert!(matches!(old, RunOutcome::Abandoned(Abandon::Said(t)) if t == "bot dimulai ulang"));
    }
}
