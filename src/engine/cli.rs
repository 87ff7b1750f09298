//! `mailbox-backup-bot backup` and `check`.
use anyhow::Result;
use crate::config::EngineSettings;
pub async fn backup(_s: EngineSettings) -> Result<()> { anyhow::bail!("todo") }
pub async fn check(_s: EngineSettings) -> Result<()> { anyhow::bail!("todo") }
