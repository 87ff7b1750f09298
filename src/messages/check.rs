//! The lines of `check` and `/check`: what each check is about, in the reader's language; the
//! detail stays as evidence.

use super::{esc, Catalog, Lang};
use crate::preflight::{CheckItem, CheckLine};

impl Catalog {
    pub fn check_item(&self, item: &CheckItem) -> String {
        let en = self.lang == Lang::En;
        let t = |id: &str, e: &str| if en { e.to_owned() } else { id.to_owned() };
        match item {
            CheckItem::Setting(v) if v == "*" => t("pengaturan", "settings"),
            CheckItem::Setting(v) => t(&format!("pengaturan {v}"), &format!("setting {v}")),
            CheckItem::EngineConfigured => {
                t("mesin backup dikonfigurasi", "backup engine configured")
            }
            CheckItem::DiskMarked => t("disk backup bertanda (terpasang)", "backup disk marked"),
            CheckItem::DiskWritable => t(
                "folder backup lokal dapat ditulisi",
                "local backup root writable",
            ),
            CheckItem::DiskHardLinks => t(
                "disk backup mendukung hard link",
                "backup disk keeps hard links",
            ),
            CheckItem::DiskFree => t("ruang kosong disk backup", "free space"),
            CheckItem::Database => t("basis data dapat dihubungi", "database reachable"),
            CheckItem::SshLogin => t(
                "login SSH dengan kunci host yang dicocokkan",
                "SSH login with strict host key",
            ),
            CheckItem::ServerTool(tool) => t(
                &format!("perkakas server {tool}"),
                &format!("server tool {tool}"),
            ),
            CheckItem::ZimbraTools => t(
                "perkakas Zimbra (zmprov, zmlocalconfig, zmhostname)",
                "server tools zmprov, zmlocalconfig, zmhostname",
            ),
            CheckItem::ServerFolder => t(
                "folder backup di server dapat ditulisi",
                "server backup folder writable",
            ),
            CheckItem::ServerFree => t(
                "ruang kosong server di atas batas aman",
                "server free space above the floor",
            ),
            CheckItem::Token => t(
                "token bot diterima Telegram",
                "bot token accepted by Telegram",
            ),
            CheckItem::Group => t("grup GROUP_CHAT_ID", "group GROUP_CHAT_ID"),
            CheckItem::SecretFile(var) => t(
                &format!("berkas {var} hanya untuk pemiliknya"),
                &format!("{var} file private to its owner"),
            ),
            CheckItem::TrustFile(var) => t(
                &format!("berkas {var} hanya dapat diubah pemiliknya"),
                &format!("{var} file writable by its owner only"),
            ),
            CheckItem::Encryption => t("enkripsi backup (age)", "backup encryption (age)"),
            CheckItem::Recipient(shown, kind) => t(
                &format!("penerima enkripsi {shown} ({kind})"),
                &format!("encryption recipient {shown} ({kind})"),
            ),
            CheckItem::Identity => t(
                "kunci pembuka BACKUP_AGE_IDENTITY",
                "identity BACKUP_AGE_IDENTITY",
            ),
            CheckItem::DrillAccount => t(
                "akun uji latihan pemulihan RESTORE_DRILL_ACCOUNT",
                "restore drill scratch account RESTORE_DRILL_ACCOUNT",
            ),
            CheckItem::Member(role, id) => t(
                &format!("{} {id} anggota grup", self.role(*role)),
                &format!("{} {id} is in the group", self.role(*role)),
            ),
        }
    }

    /// `PASS what: detail` — the terminal's line.
    pub fn check_line_plain(&self, l: &CheckLine) -> String {
        format!(
            "{} {}{}",
            if l.ok { "PASS" } else { "FAIL" },
            self.check_item(&l.item),
            if l.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", l.detail)
            }
        )
    }

    /// The chat's answer to `/check`: one line per check, the failures counted first.
    pub fn check_report(&self, lines: &[CheckLine]) -> String {
        let bad = lines.iter().filter(|l| !l.ok).count();
        let head = match (self.lang, bad) {
            (Lang::Id, 0) => "🩺 <b>Pemeriksaan: semua baik</b>".to_owned(),
            (Lang::En, 0) => "🩺 <b>Check: all good</b>".to_owned(),
            (Lang::Id, n) => format!("🩺 <b>Pemeriksaan: {n} masalah</b>"),
            (Lang::En, n) => format!("🩺 <b>Check: {n} problems</b>"),
        };
        let mut out = vec![head];
        for l in lines {
            out.push(format!(
                "{} {}{}",
                if l.ok { "✅" } else { "❌" },
                esc(&self.check_item(&l.item)),
                if l.detail.is_empty() {
                    String::new()
                } else {
                    format!(" — <code>{}</code>", esc(&l.detail))
                }
            ));
        }
        out.join("\n")
    }

    pub fn check_running(&self) -> String {
        self.pick(
            "🩺 Memeriksa pengaturan, disk, basis data, server mail dan grup…",
            "🩺 Checking the settings, the disk, the database, the mail server and the group…",
        )
        .into()
    }
}
