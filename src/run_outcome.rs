//! What a backup run ended with, as stored with its order (JSON) and read by the report.

use serde::{Deserialize, Serialize};

use crate::engine::{BackupReport, EngineError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Completed(BackupReport),
    Stopped(EngineError),
    /// The bot could not run or resume it (no engine after a restart, say); the text is already
    /// in the chat's language.
    Abandoned(String),
}
