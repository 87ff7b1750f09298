//! What the restore drill says: that it starts, its verdict (a failure mentions the Kasubdit and
//! the Kasi), its entry in the daily log, and why one cannot start now.

use chrono::TimeDelta;

use super::{duration, esc, Catalog, Lang};
use crate::engine::restore::{RestoreError, RestoreReport};
use crate::storage::{DrillRow, DrillStatus};

impl Catalog {
    pub fn drill_usage_refused(&self) -> String {
        self.pick(
            "⛔ Latihan pemulihan hanya dapat diminta oleh Kasubdit atau Kasi.",
            "⛔ Only the Kasubdit or the Kasi can ask for a restore drill.",
        )
        .into()
    }

    pub fn drill_no_backup(&self) -> String {
        self.pick(
            "⛔ Belum ada backup terverifikasi yang tercatat, jadi belum ada yang dapat dilatih. Jalankan backup dulu (/order_backup).",
            "⛔ No verified backup is recorded yet, so there is nothing to drill. Run a backup first (/order_backup).",
        )
        .into()
    }

    pub fn drill_busy(&self) -> String {
        self.pick(
            "⛔ Backup, pemulihan atau latihan lain sedang berjalan di server mail. Coba /drill lagi setelah selesai.",
            "⛔ A backup, a restore or another drill is running on the mail server. Try /drill again when it is done.",
        )
        .into()
    }

    /// The drill starts: which backup, which mailbox, and that no user's mailbox is touched.
    pub fn drill_started(&self, d: &DrillRow, asked_by: Option<&str>) -> String {
        let who = match (self.lang, asked_by) {
            (Lang::Id, Some(n)) => format!("diminta {n}"),
            (Lang::En, Some(n)) => format!("asked by {n}"),
            (Lang::Id, None) => "terjadwal".into(),
            (Lang::En, None) => "scheduled".into(),
        };
        match self.lang {
            Lang::Id => format!("🧪 <b>Latihan pemulihan #{}</b> ({who}): mailbox <code>{}</code> dari backup <code>{}</code> (perintah #{}) dipulihkan ke salinan uji yang tidak dibaca pengguna mana pun, lalu dibandingkan dengan arsipnya dan dengan jumlah pesan yang dicatat backup. Mailbox pengguna tidak disentuh.", d.id, esc(&d.account), esc(&d.folder), d.order),
            Lang::En => format!("🧪 <b>Restore drill #{}</b> ({who}): mailbox <code>{}</code> from backup <code>{}</code> (order #{}) is restored into a scratch copy no user reads, then compared with its archive and with the message count the backup recorded. No user's mailbox is touched.", d.id, esc(&d.account), esc(&d.folder), d.order),
        }
    }

    /// The drill's verdict. A pass says what was compared; a failure says why, with the raw
    /// error as evidence, and mentions `mentions` (the Kasubdit and the Kasi).
    pub fn drill_done(
        &self,
        d: &DrillRow,
        result: &Result<RestoreReport, RestoreError>,
        took: TimeDelta,
        mentions: &str,
    ) -> String {
        let took = duration(self.lang, took);
        let head = |passed: bool| match (self.lang, passed) {
            (Lang::Id, true) => format!("✅ <b>Latihan pemulihan #{} LULUS</b>", d.id),
            (Lang::En, true) => format!("✅ <b>Restore drill #{} PASSED</b>", d.id),
            (Lang::Id, false) => {
                format!("❌ <b>Latihan pemulihan #{} GAGAL</b> — {mentions}", d.id)
            }
            (Lang::En, false) => format!("❌ <b>Restore drill #{} FAILED</b> — {mentions}", d.id),
        };
        let what = match self.lang {
            Lang::Id => format!(
                "Mailbox <code>{}</code> dari backup <code>{}</code>",
                esc(&d.account),
                esc(&d.folder)
            ),
            Lang::En => format!(
                "Mailbox <code>{}</code> from backup <code>{}</code>",
                esc(&d.account),
                esc(&d.folder)
            ),
        };
        match result {
            Ok(r) if r.complete() => {
                let recorded = r.recorded.map_or(String::new(), |n| match self.lang {
                    Lang::Id => format!(" (backup mencatat {n})"),
                    Lang::En => format!(" (the backup recorded {n})"),
                });
                match self.lang {
                    Lang::Id => format!("{}\n{what}: {} pesan di {} folder dipulihkan dan semuanya cocok dengan arsip{recorded}. Waktu: {took}. Salinan uji sudah dihapus.", head(true), r.in_backup(), r.folders.len()),
                    Lang::En => format!("{}\n{what}: {} messages in {} folders were restored and all match the archive{recorded}. Time: {took}. The scratch copy was removed.", head(true), r.in_backup(), r.folders.len()),
                }
            }
            Ok(r) => {
                let why = match (self.lang, r.short_of()) {
                    (Lang::Id, Some((found, recorded))) => format!("backup mencatat <b>{recorded}</b> pesan di arsip ini saat diverifikasi, tetapi pemulihan hanya menemukan <b>{found}</b>"),
                    (Lang::En, Some((found, recorded))) => format!("the backup recorded <b>{recorded}</b> messages in this archive when it was verified, but the restore found only <b>{found}</b>"),
                    (Lang::Id, None) => format!("{} dari {} pesan arsip tidak ada di salinan uji setelah pemulihan", r.missing_after(), r.in_backup()),
                    (Lang::En, None) => format!("{} of the archive's {} messages are not in the scratch copy after the restore", r.missing_after(), r.in_backup()),
                };
                match self.lang {
                    Lang::Id => format!("{}\n{what}: {why}. Waktu: {took}. Backup ini mungkin tidak dapat dipulihkan utuh: periksa sebelum dibutuhkan.", head(false)),
                    Lang::En => format!("{}\n{what}: {why}. Time: {took}. This backup may not restore whole: look into it before it is needed.", head(false)),
                }
            }
            Err(e) => match self.lang {
                Lang::Id => format!("{}\n{what}: {}. Waktu: {took}. Backup ini mungkin tidak dapat dipulihkan: periksa sebelum dibutuhkan.", head(false), self.restore_error(e)),
                Lang::En => format!("{}\n{what}: {}. Time: {took}. This backup may not restore: look into it before it is needed.", head(false), self.restore_error(e)),
            },
        }
    }

    /// Why a drill that was running when the bot stopped did not end.
    pub fn drill_interrupted(&self) -> String {
        self.pick(
            "bot berhenti saat latihan berjalan, jadi salinan uji mungkin masih ada: di Dovecot/Maildir folder .restore-drill-… di MAIL_SERVER_BACKUP_DIR dihapus oleh pemulihan atau latihan berikutnya setelah satu jam; di Zimbra kosongkan RESTORE_DRILL_ACCOUNT (latihan berikutnya menolak akun yang berisi surat)",
            "the bot stopped during the drill, so the scratch copy may be left: on Dovecot/Maildir the .restore-drill-… folder in MAIL_SERVER_BACKUP_DIR is removed by the next restore or drill after an hour; on Zimbra empty RESTORE_DRILL_ACCOUNT (the next drill refuses an account holding mail)",
        )
        .into()
    }

    /// A drill in the daily log.
    pub fn drill_log_entry(
        &self,
        d: &DrillRow,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        let outcome = match d.status {
            DrillStatus::Passed => self.pick("lulus", "passed"),
            DrillStatus::Failed => self.pick("GAGAL", "FAILED"),
            DrillStatus::Running => self.pick("berjalan", "running"),
        };
        let who = match d.asked_by {
            Some(u) => format!("{} {}", self.pick("diminta", "asked by"), name_of(u)),
            None => self.pick("terjadwal", "scheduled").into(),
        };
        let took = d
            .ended_at
            .map(|end| duration(self.lang, end - d.started_at))
            .unwrap_or_default();
        let counts = match (d.compared, d.recorded) {
            (Some(c), Some(r)) => format!(
                "; {c} {} ({} {r})",
                self.pick("pesan dibandingkan", "messages compared"),
                self.pick("tercatat", "recorded")
            ),
            (Some(c), None) => format!(
                "; {c} {}",
                self.pick("pesan dibandingkan", "messages compared")
            ),
            _ => String::new(),
        };
        let error = d
            .error
            .as_deref()
            .map(|e| {
                format!(
                    "\n<code>{}</code>",
                    esc(&e.chars().take(300).collect::<String>())
                )
            })
            .unwrap_or_default();
        match self.lang {
            Lang::Id => format!("<b>Latihan pemulihan #{}</b> — {outcome}: <code>{}</code> dari backup <code>{}</code>; {who}, mulai {}, lama {took}{counts}{error}", d.id, esc(&d.account), esc(&d.folder), self.time(d.started_at)),
            Lang::En => format!("<b>Restore drill #{}</b> — {outcome}: <code>{}</code> from backup <code>{}</code>; {who}, started {}, took {took}{counts}{error}", d.id, esc(&d.account), esc(&d.folder), self.time(d.started_at)),
        }
    }
}
