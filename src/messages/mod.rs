//! Every text the bot sends, in Bahasa Indonesia (default) and English. Texts are Telegram HTML:
//! values from outside (names, notes, errors) go through [`esc`].

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::domain::{
    BadNote, Move, Order, OrderStatus, Refusal, Role, SopStep, StepOutcome, StepRecord,
    NOTE_MAX_CHARS,
};

mod check;
mod drill;
mod progress;
mod records;
mod report;
mod restore;

pub use crate::domain::lang::{bytes, Lang};
pub use progress::{RunEnd, RunView};

/// The text a person reads from our HTML (for the terminal).
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Characters that change the direction of the text around them (embeddings, overrides,
/// isolates, marks): a name or note holding U+202E could reverse the rest of the reader's line.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_right_to_left(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}' | '\u{10800}'..='\u{10FFF}' | '\u{1E800}'..='\u{1EFFF}')
}

/// Text a person typed (a name, a note) as plain text: without bidi controls, and, when it is
/// written right to left, isolated (FSI … PDI) so it cannot reorder the words around it.
pub fn plain_user_text(s: &str) -> String {
    let kept: String = s.chars().filter(|c| !is_bidi_control(*c)).collect();
    if kept.chars().any(is_right_to_left) {
        format!("\u{2068}{kept}\u{2069}")
    } else {
        kept
    }
}

/// A name shown as a label: plain user text, at most `max` characters (an ellipsis past it).
pub fn label(s: &str, max: usize) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !is_bidi_control(*c) && !c.is_control())
        .collect();
    let short = if kept.chars().count() > max {
        format!(
            "{}…",
            kept.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    } else {
        kept
    };
    plain_user_text(&short)
}

/// [`plain_user_text`] escaped for Telegram's HTML mode.
pub fn esc_user(s: &str) -> String {
    esc(&plain_user_text(s))
}

/// A CSV cell a spreadsheet shows as text: one starting with `=`, `+`, `-`, `@`, a tab or a CR
/// would be read as a formula, so it gets a leading `'` (OWASP's rule for CSV injection).
pub fn inert_cell(s: &str) -> String {
    let s: String = s.chars().filter(|c| !is_bidi_control(*c)).collect();
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

/// Escapes text for Telegram's HTML mode.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A duration as a person says it: `2 jam 5 menit`, `3 menit 20 detik`, `45 detik` (English:
/// `2 h 5 min`, `3 min 20 s`, `45 s`). Seconds are left out from an hour on.
pub fn duration(lang: Lang, d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let (hu, mu, su) = match lang {
        Lang::Id => ("jam", "menit", "detik"),
        Lang::En => ("h", "min", "s"),
    };
    match (h, m, s) {
        (0, 0, s) => format!("{s} {su}"),
        (0, m, 0) => format!("{m} {mu}"),
        (0, m, s) => format!("{m} {mu} {s} {su}"),
        (h, 0, _) => format!("{h} {hu}"),
        (h, m, _) => format!("{h} {hu} {m} {mu}"),
    }
}

/// A size as a person reads it: B, KB, MB, GB, TB (of 1024), one decimal with erwise the zone's
/// own abbreviation (or its name when the abbreviation is only an offset).
pub fn zone_name(tz: Tz, t: DateTime<Utc>) -> String {
    match tz.name() {
        "Asia/Jakarta" | "Asia/Pontianak" => "WIB".into(),
        "Asia/Makassar" => "WITA".into(),
        "Asia/Jayapura" => "WIT".into(),
        name => {
            let abbr = t.with_timezone(&tz).format("%Z").to_string();
            if abbr.starts_with(['+', '-']) {
                name.to_owned()
            } else {
                abbr
            }
        }
    }
}

/// The command menu Telegram shows: each command and what it does.
pub fn command_menu(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let t = |id, en| match lang {
        Lang::Id => id,
        Lang::En => en,
    };
    vec![
        (
            "order_backup",
            t(
                "Perintahkan backup mailbox (Kasubdit)",
                "Order a mailbox backup (Kasubdit)",
            ),
        ),
        (
            "direct",
            t("Disposisikan ke JFU (Kasi)", "Direct a JFU (Kasi)"),
        ),
        ("start", t("Mulai backup (JFU)", "Start the backup (JFU)")),
        (
            "receive",
            t("Terima laporan (Kasi)", "Receive the report (Kasi)"),
        ),
        ("status", t("Status perintah aktif", "The active order")),
        (
            "cancel",
            t("Batalkan perintah aktif", "Cancel the active order"),
        ),
        (
            "restore",
            t(
                "Minta pemulihan mailbox dari backup (Kasi)",
                "Ask to restore a mailbox from a backup (Kasi)",
            ),
        ),
        (
            "drill",
            t(
                "Latihan pemulihan ke salinan uji (Kasubdit, Kasi)",
                "A restore drill into a scratch copy (Kasubdit, Kasi)",
            ),
        ),
        (
            "check",
            t(
                "Periksa pengaturan, disk, server mail dan grup (Kasubdit, Kasi)",
                "Check the settings, disk, mail server and group (Kasubdit, Kasi)",
            ),
        ),
        (
            "export",
            t(
                "Log kegiatan sebulan sebagai berkas CSV",
                "The month's activity as a CSV file",
            ),
        ),
        (
            "id",
            t(
                "Id Telegram Anda, id obrolan dan peran Anda",
                "Your Telegram id, the chat's id and your roles",
            ),
        ),
        (
            "log",
            t(
                "Log kegiatan harian: hari ini, kemarin atau tanggal",
                "The daily activity log: today, yesterday or a date",
            ),
        ),
        ("help", t("Bantuan", "Help")),
    ]
}

/// The message catalogue of one language.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    pub lang: Lang,
    pub tz: Tz,
}

impl Catalog {
    pub fn new(lang: Lang, tz: Tz) -> Self {
        Catalog { lang, tz }
    }

    fn pick<'a>(&self, id: &'a str, en: &'a str) -> &'a str {
        match self.lang {
            Lang::Id => id,
            Lang::En => en,
        }
    }

    /// A time of day with its zone: `14:05:09 WIB`.
    pub fn time(&self, t: DateTime<Utc>) -> String {
        format!(
            "{} {}",
            t.with_timezone(&self.tz).format("%H:%M:%S"),
            zone_name(self.tz, t)
        )
    }

    pub fn date(&self, d: NaiveDate) -> String {
        d.format("%d-%m-%Y").to_string()
    }

    pub fn role(&self, role: Role) -> &'static str {
        match role {
            Role::Kasubdit => "Kasubdit Perencanaan",
            Role::Kasi => "Kasi Portal Web",
            Role::Jfu => "JFU",
        }
    }

    pub fn step_name(&self, step: SopStep) -> &'static str {
        match (self.lang, step) {
            (Lang::Id, SopStep::Order) => "Memerintahkan backup email DJKI",
            (Lang::Id, SopStep::Direct) => "Mendisposisikan kepada JFU",
            (Lang::Id, SopStep::CreateFolder) => "Membuat folder backup bertanggal",
            (Lang::Id, SopStep::RemoteLogin) => "Remote login ke server email",
            (Lang::Id, SopStep::ServerBackup) => "Menjalankan backup mailbox di server",
            (Lang::Id, SopStep::CopyAndReport) => "Menyalin backup dan melapor ke Kasi",
            (Lang::Id, SopStep::Receive) => "Menerima laporan",
            (Lang::Id, SopStep::DailyLog) => "Mencatat di log kegiatan harian",
            (Lang::En, SopStep::Order) => "Order the DJKI e-mail backup",
            (Lang::En, SopStep::Direct) => "Direct a JFU",
            (Lang::En, SopStep::CreateFolder) => "Create the dated backup folder",
            (Lang::En, SopStep::RemoteLogin) => "Remote login to the mail server",
            (Lang::En, SopStep::ServerBackup) => "Run the mailbox backup on the server",
            (Lang::En, SopStep::CopyAndReport) => "Copy the backup down and report to the Kasi",
            (Lang::En, SopStep::Receive) => "Receive the report",
            (Lang::En, SopStep::DailyLog) => "Record in the daily activity log",
        }
    }

    pub fn status_name(&self, status: OrderStatus) -> &'static str {
        match (self.lang, status) {
            (Lang::Id, OrderStatus::Ordered) => "diperintahkan",
            (Lang::Id, OrderStatus::Directed) => "didisposisikan",
            (Lang::Id, OrderStatus::Started) => "sedang berjalan",
            (Lang::Id, OrderStatus::Reported) => "dilaporkan",
            (Lang::Id, OrderStatus::Received) => "diterima",
            (Lang::Id, OrderStatus::Logged) => "selesai dan tercatat",
            (Lang::Id, OrderStatus::Failed) => "gagal",
            (Lang::Id, OrderStatus::Cancelled) => "dibatalkan",
            (Lang::En, OrderStatus::Ordered) => "ordered",
            (Lang::En, OrderStatus::Directed) => "directed",
            (Lang::En, OrderStatus::Started) => "running",
            (Lang::En, OrderStatus::Reported) => "reported",
            (Lang::En, OrderStatus::Received) => "received",
            (Lang::En, OrderStatus::Logged) => "done and logged",
            (Lang::En, OrderStatus::Failed) => "failed",
            (Lang::En, OrderStatus::Cancelled) => "cancelled",
        }
    }

    // ---- help -----------------------------------------------------------------------------

    /// The commands `roles` may use, one line each.
    pub fn help(&self, roles: &[Role]) -> String {
        let mut lines = vec![format!(
            "<b>{}</b>",
            self.pick(
                "Bot backup mailbox DJKI — perintah:",
                "DJKI mailbox-backup bot — commands:"
            )
        )];
        let has = |r| roles.contains(&r);
        if has(Role::Kasubdit) {
            lines.push(
                match self.lang {
                    Lang::Id => format!("/order_backup [catatan, maks. {NOTE_MAX_CHARS} karakter] — memerintahkan backup mailbox"),
                    Lang::En => format!("/order_backup [note, at most {NOTE_MAX_CHARS} characters] — order a mailbox backup"),
                },
            );
        }
        if has(Role::Kasi) {
            lines.push(
                self.pick(
                    "/direct [@username] — mendisposisikan ke JFU",
                    "/direct [@username] — direct a JFU",
                )
                .into(),
            );
            lines.push(
                self.pick(
                    "/receive — menerima laporan dan meneruskan ke Kasubdit",
                    "/receive — receive the report and pass it to the Kasubdit",
                )
                .into(),
            );
            lines.push(
                self.pick(
                    "/restore FOLDER AKUN [AKUN_TUJUAN] — meminta pemulihan mailbox dari backup (disetujui Kasubdit); akun yang sudah tidak ada dibuat lagi. /restore FOLDER semua — semua akun backup itu",
                    "/restore FOLDER ACCOUNT [TARGET] — ask to restore a mailbox from a backup (a Kasubdit approves); an account that no longer exists is made again. /restore FOLDER all — every account of that backup",
                )
                .into(),
            );
        }
        if has(Role::Jfu) {
            lines.push(
                self.pick(
                    "/start — mulai backup (langkah 3–6 dijalankan bot)",
                    "/start — start the backup (the bot does steps 3–6)",
                )
                .into(),
            );
        }
        if has(Role::Kasubdit) || has(Role::Kasi) {
            lines.push(
                self.pick(
                    "/drill — latihan pemulihan sekarang: satu mailbox backup terbaru dipulihkan ke salinan uji (bukan mailbox pengguna) dan dibandingkan dengan arsipnya",
                    "/drill — a restore drill now: one mailbox of the newest backup restored into a scratch copy (no user's mailbox) and compared with its archive",
                )
                .into(),
            );
            lines.push(
                self.pick(
                    "/cancel [alasan] — membatalkan perintah aktif sebelum laporan backup terkirim; setelah laporan terkirim, backup yang sudah terverifikasi tetap disimpan dan menunggu /receive",
                    "/cancel [reason] — cancel the active order before its backup report is out; once the report is out, the verified backup is kept and waits for /receive",
                )
                .into(),
            );
        }
        if has(Role::Kasubdit) || has(Role::Kasi) {
            lines.push(
                self.pick(
                    "/check — memeriksa pengaturan, disk backup, basis data, server mail dan grup",
                    "/check — check the settings, the backup disk, the database, the mail server and the group",
                )
                .into(),
            );
        }
        if roles.is_empty() {
            lines.push(
                self.pick(
                    "Anda belum terdaftar dalam peran apa pun; ketik /id dan berikan id Anda kepada admin.",
                    "You hold no role here; type /id and give your id to the admin.",
                )
                .into(),
            );
        } else {
            lines.push(
                self.pick(
                    "/status — status perintah aktif",
                    "/status — the active order",
                )
                .into(),
            );
            lines.push(
                self.pick(
                    "/log [hari ini|kemarin|DD-MM-YYYY|MM-YYYY] — log kegiatan harian, atau sebulan",
                    "/log [today|yesterday|DD-MM-YYYY|MM-YYYY] — the daily activity log, or a month's",
                )
                .into(),
            );
            lines.push(
                self.pick(
                    "/export [MM-YYYY] — log kegiatan sebulan (bawaan: bulan ini) sebagai berkas CSV",
                    "/export [MM-YYYY] — a month's activity (default: this month) as a CSV file",
                )
                .into(),
            );
        }
        lines.push(
            self.pick(
                "/id — id Telegram Anda, id obrolan ini dan peran Anda",
                "/id — your Telegram id, this chat's id and your roles",
            )
            .into(),
        );
        lines.push(self.pick("/help — bantuan ini", "/help — this help").into());
        lines.join("\n")
    }

    // ---- the chain ------------------------------------------------------------------------

    pub fn order_relayed(&self, order: &Order, kasubdit: &str, kasi: &str) -> String {
        let note = order
            .note
            .as_deref()
            .map(|n| format!("\n{}: <i>{}</i>", self.pick("Catatan", "Note"), esc_user(n)))
            .unwrap_or_default();
        match self.lang {
            Lang::Id => format!(
                "📋 <b>Perintah backup mailbox {}</b>\n{kasubdit} memerintahkan backup email DJKI (langkah 1).{note}\n\n{kasi}, silakan disposisikan ke JFU: tekan tombol di bawah atau ketik /direct @username.",
                order.id
            ),
            Lang::En => format!(
                "📋 <b>Mailbox backup order {}</b>\n{kasubdit} orders the DJKI e-mail backup (step 1).{note}\n\n{kasi}, please direct a JFU: press a button below or type /direct @username.",
                order.id
            ),
        }
    }

    pub fn direct_button(&self, jfu_name: &str) -> String {
        format!("{} {jfu_name}", self.pick("Disposisi ke", "Direct to"))
    }

    pub fn directed(&self, order: &Order, kasi: &str, jfu: &str) -> String {
        match self.lang {
            Lang::Id => format!(
                "➡️ {kasi} mendisposisikan perintah {} kepada {jfu} (langkah 2).\n\n{jfu}, ketik /start untuk memulai backup; bot akan membuat folder bertanggal, login ke server email, menjalankan backup, dan menyalinnya (langkah 3–6).",
                order.id
            ),
            Lang::En => format!(
                "➡️ {kasi} directs order {} to {jfu} (step 2).\n\n{jfu}, type /start to begin; the bot will create the dated folder, log into the mail server, run the backup and copy it down (steps 3–6).",
                order.id
            ),
        }
    }

    pub fn button_used(&self, jfu: &str) -> String {
        format!("✅ {} {jfu}", self.pick("Didisposisikan ke", "Directed to"))
    }

    pub fn started(&self, order: &Order, jfu: &str) -> String {
        match self.lang {
            Lang::Id => format!("▶️ {jfu} memulai backup {}. Bot menjalankan langkah 3–6; kemajuan ditampilkan di sini.", order.id),
            Lang::En => format!("▶️ {jfu} starts backup {}. The bot runs steps 3–6; progress shows here.", order.id),
        }
    }

    pub fn engine_not_configured(&self) -> String {
        self.pick(
            "⚠️ Mesin backup belum dikonfigurasi (MAIL_SSH_HOST dan kawan-kawan di .env). Perintah tetap menunggu; jalankan `mailbox-backup-bot check` lalu ketik /start lagi.",
            "⚠️ The backup engine is not configured (MAIL_SSH_HOST and friends in .env). The order keeps waiting; run `mailbox-backup-bot check`, then type /start again.",
        )
        .into()
    }

    /// What kind of failure stopped a run, in the reader's words.
    pub fn failure_kind(&self, kind: crate::engine::ErrorKind) -> &'static str {
        use crate::engine::ErrorKind as K;
        match kind {
            K::LocalFolder => self.pick(
                "folder backup lokal tidak dapat dibuat",
                "the local backup folder cannot be made",
            ),
            K::Unreachable => self.pick(
                "server mail tidak dapat dihubungi",
                "the mail server cannot be reached",
            ),
            K::KeyRefused => self.pick("kunci SSH ditolak server", "the SSH key was refused"),
            K::HostKeyChanged => self.pick(
                "kunci host server mail berubah (kemungkinan penyadapan atau server diganti)",
                "the mail server's host key changed (a man in the middle, or a new server)",
            ),
            K::HostKeyUnknown => self.pick(
                "kunci host server mail tidak dikenal",
                "the mail server's host key is unknown",
            ),
            K::Ssh => self.pick("koneksi SSH gagal", "the SSH connection failed"),
            K::ServerCommand => {
                self.pick("perintah di server gagal", "a command on the server failed")
            }
            K::NoMailboxes => self.pick(
                "server tidak mencantumkan mailbox",
                "the server listed no mailboxes",
            ),
            K::NoSpace => self.pick(
                "ruang kosong di disk backup tidak cukup",
                "not enough free space on the backup disk",
            ),
            K::ServerNoSpace => self.pick(
                "ruang kosong di server mail tidak cukup",
                "not enough free space on the mail server",
            ),
            K::DiskNotReady => self.pick(
                "disk backup tidak siap (belum terpasang?)",
                "the backup disk is not ready (not mounted?)",
            ),
            K::Stalled => self.pick("koneksi macet", "the connection stalled"),
            K::Cancelled => self.pick("dibatalkan", "cancelled"),
            K::Interrupted => self.pick(
                "terhenti karena bot dimatikan",
                "interrupted by a shutdown of the bot",
            ),
            K::Copy => self.pick("penyalinan gagal", "the copy failed"),
            K::Encryption => self.pick(
                "pengaturan enkripsi (BACKUP_ENCRYPT_TO) tidak dapat dipakai",
                "the encryption settings (BACKUP_ENCRYPT_TO) cannot be used",
            ),
        }
    }

    /// `/start` refused: a cancelled run is still stopping its exports on the server.
    pub fn previous_run_stopping(&self) -> String {
        self.pick(
            "⏳ Backup sebelumnya masih dihentikan (proses di server sedang dibersihkan). Tunggu sebentar, lalu ketik /start lagi.",
            "⏳ The previous backup is still being stopped (its processes on the server are being cleaned up). Wait a moment, then type /start again.",
        )
        .into()
    }

    /// `/start` refused: the backup disk is not there (the order keeps waiting).
    pub fn disk_not_ready(&self, why: &str) -> String {
        match self.lang {
            Lang::Id => format!("⚠️ Disk backup tidak siap — belum terpasang (mount)? Perintah tetap menunggu; pasang disknya lalu ketik /start lagi.\n<code>{}</code>", esc(why)),
            Lang::En => format!("⚠️ The backup disk is not ready — not mounted? The order keeps waiting; mount the disk, then type /start again.\n<code>{}</code>", esc(why)),
        }
    }

    pub fn already_running(&self, order: &Order) -> String {
        match self.lang {
            Lang::Id => format!("⏳ Backup {} sudah berjalan. Lihat /status.", order.id),
            Lang::En => format!("⏳ Backup {} is already running. See /status.", order.id),
        }
    }

    pub fn received(&self, order: &Order, kasi: &str, kasubdit: &str) -> String {
        match self.lang {
            Lang::Id => format!("📨 {kasi} menerima laporan backup {} (langkah 7) dan meneruskannya kepada {kasubdit}: laporannya adalah pesan yang dibalas ini.", order.id),
            Lang::En => format!("📨 {kasi} received the report of backup {} (step 7) and passes it up to {kasubdit}: the report is the message this replies to.", order.id),
        }
    }

    pub fn logged(&self, order: &Order, date: NaiveDate) -> String {
        match self.lang {
            Lang::Id => format!(
                "🗒 Backup {} dicatat di log kegiatan harian {} (langkah 8). Lihat /log.",
                order.id,
                self.date(date)
            ),
            Lang::En => format!(
                "🗒 Backup {} is recorded in the daily activity log of {} (step 8). See /log.",
                order.id,
                self.date(date)
            ),
        }
    }

    pub fn cancelled(&self, order: &Order, by: &str) -> String {
        let reason = order
            .reason
            .as_deref()
            .map(|r| format!(" ({})", esc_user(r)))
            .unwrap_or_default();
        match self.lang {
            Lang::Id => format!("🛑 {by} membatalkan perintah {}{reason}. Perintah baru dapat diberikan dengan /order_backup.", order.id),
            Lang::En => format!("🛑 {by} cancelled order {}{reason}. A new one can be given with /order_backup.", order.id),
        }
    }

    pub fn no_active_order(&self) -> String {
        self.pick("Tidak ada perintah backup yang aktif. Kasubdit dapat memerintahkan dengan /order_backup.", "There is no active backup order. The Kasubdit can give one with /order_backup.").into()
    }

    // ---- refusals -------------------------------------------------------------------------

    pub fn refusal(
        &self,
        refusal: &Refusal,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        match refusal {
            Refusal::WrongRole { needed } => {
                let roles: Vec<&str> = needed.iter().map(|r| self.role(*r)).collect();
                match self.lang {
                    Lang::Id => format!("⛔ Perintah ini hanya untuk {}. Ketik /help untuk perintah Anda.", roles.join(" atau ")),
                    Lang::En => format!("⛔ Only the {} may do this. Type /help for your commands.", roles.join(" or ")),
                }
            }
            Refusal::NotTheDirectedJfu { directed } => match self.lang {
                Lang::Id => format!("⛔ Perintah ini didisposisikan kepada {}, bukan kepada Anda.", name_of(*directed)),
                Lang::En => format!("⛔ This order was directed to {}, not to you.", name_of(*directed)),
            },
            Refusal::NotAJfu { user } => match self.lang {
                Lang::Id => format!("⛔ {} bukan JFU yang terdaftar. Ketik /direct lalu @username salah satu JFU.", name_of(*user)),
                Lang::En => format!("⛔ {} is not a registered JFU. Type /direct and the @username of a JFU.", name_of(*user)),
            },
            Refusal::AlreadyActive { active, status } => match self.lang {
                Lang::Id => format!("⛔ Perintah {active} masih aktif ({}). Lihat /status, atau batalkan dengan /cancel.", self.status_name(*status)),
                Lang::En => format!("⛔ Order {active} is still active ({}). See /status, or cancel it with /cancel.", self.status_name(*status)),
            },
            Refusal::OutOfOrder { status, action } => {
                let hint = match (action, status) {
                    (Move::Start, OrderStatus::Ordered) => self.pick("Kasi belum mendisposisikan; tunggu /direct.", "The Kasi has not directed it yet; wait for /direct."),
                    (Move::Start, OrderStatus::Started) => self.pick("Backup sudah berjalan; lihat /status.", "The backup is already running; see /status."),
                    (Move::Cancel, OrderStatus::Reported) => self.pick("Backup sudah selesai dan terverifikasi, sehingga tidak dapat dibatalkan; laporannya menunggu /receive dari Kasi.", "The backup is done and verified, so it cannot be cancelled; its report waits for the Kasi's /receive."),
                    (Move::Receive, _) => self.pick("Belum ada laporan untuk diterima; lihat /status.", "There is no report to receive yet; see /status."),
                    (Move::Direct, _) => self.pick("Disposisi hanya sebelum JFU memulai; lihat /status.", "Directing is only possible before the JFU starts; see /status."),
                    _ => self.pick("Lihat /status.", "See /status."),
                };
                match self.lang {
                    Lang::Id => format!("⛔ Tidak dapat dilakukan saat perintah berstatus {}. {hint}", self.status_name(*status)),
                    Lang::En => format!("⛔ Not possible while the order is {}. {hint}", self.status_name(*status)),
                }
            }
        }
    }

    pub fn unknown_jfu(&self, arg: &str, jfus: &[String]) -> String {
        match self.lang {
            Lang::Id => format!(
                "⛔ JFU {:?} tidak dikenal. Ketik /direct lalu salah satu: {}",
                esc(arg),
                jfus.join(", ")
            ),
            Lang::En => format!(
                "⛔ Unknown JFU {:?}. Type /direct and one of: {}",
                esc(arg),
                jfus.join(", ")
            ),
        }
    }

    pub fn name_a_jfu(&self, jfus: &[String]) -> String {
        match self.lang {
            Lang::Id => format!("Ada beberapa JFU. Ketik /direct lalu salah satu: {} — atau tekan tombol di pesan perintah.", jfus.join(", ")),
            Lang::En => format!("There are several JFUs. Type /direct and one of: {} — or press a button under the order.", jfus.join(", ")),
        }
    }

    pub fn bad_date(&self, arg: &str) -> String {
        match self.lang {
            Lang::Id => format!("⛔ Tanggal {:?} tidak dikenali. Ketik /log hari ini, /log kemarin, /log 24-11-2026 atau /log 2026-11-24.", esc(arg)),
            Lang::En => format!("⛔ {:?} is not a date. Type /log today, /log yesterday, /log 24-11-2026 or /log 2026-11-24.", esc(arg)),
        }
    }

    /// A note (of `/order_backup` or `/cancel`) that was refused; nothing was recorded.
    pub fn bad_note(&self, bad: &BadNote) -> String {
        match (self.lang, bad) {
            (Lang::Id, BadNote::TooLong { chars, max }) => format!("⛔ Catatan terlalu panjang: {chars} karakter, paling banyak {max} karakter. Belum ada yang dicatat atau diubah; silakan kirim ulang dengan catatan yang lebih singkat."),
            (Lang::En, BadNote::TooLong { chars, max }) => format!("⛔ The note is too long: {chars} characters, at most {max}. Nothing was recorded or changed; please send it again with a shorter note."),
            (Lang::Id, BadNote::ControlCharacter(c)) => format!("⛔ Catatan memuat karakter kontrol (U+{c:04X}) yang tidak dapat disimpan. Belum ada yang dicatat atau diubah; silakan ketik ulang catatannya tanpa karakter tersebut."),
            (Lang::En, BadNote::ControlCharacter(c)) => format!("⛔ The note holds a control character (U+{c:04X}) that cannot be stored. Nothing was recorded or changed; please type the note again without it."),
        }
    }

    pub fn unknown_command(&self) -> String {
        self.pick(
            "Perintah tidak dikenal. Ketik /help untuk daftar perintah.",
            "Unknown command. Type /help for the list.",
        )
        .into()
    }

    /// Said once to a person whose commands come faster than they can be answered; `name` is
    /// HTML already.
    pub fn slow_down(&self, name: &str) -> String {
        match self.lang {
            Lang::Id => format!("⏳ {name}, terlalu banyak perintah sekaligus: perintah berikutnya diabaikan sebentar. Tunggu jawabannya dulu."),
            Lang::En => format!("⏳ {name}, too many commands at once: the next ones are ignored for a while. Wait for the answers first."),
        }
    }

    pub fn bad_arguments(&self, usage: &str) -> String {
        match self.lang {
            Lang::Id => format!("⛔ Argumen tidak sesuai. Contoh: {}", esc(usage)),
            Lang::En => format!("⛔ Wrong arguments. Example: {}", esc(usage)),
        }
    }

    pub fn button_not_for_you(&self) -> String {
        self.pick(
            "Tombol ini hanya untuk Kasi Portal Web.",
            "This button is for the Kasi Portal Web only.",
        )
        .into()
    }

    pub fn button_stale(&self) -> String {
        self.pick(
            "Tombol ini sudah tidak berlaku.",
            "This button is no longer valid.",
        )
        .into()
    }

    /// A command that came while PostgreSQL could not be reached.
    pub fn database_unavailable(&self) -> String {
        self.pick(
            "⚠️ Basis data sedang tidak dapat dihubungi, jadi perintah Anda belum dijalankan. Coba lagi beberapa saat lagi.",
            "⚠️ The database cannot be reached right now, so your command was not carried out. Please try again in a moment.",
        )
        .into()
    }

    pub fn internal_error(&self) -> String {
        self.pick(
            "⚠️ Terjadi kesalahan internal; tidak ada yang diubah. Coba lagi sebentar lagi.",
            "⚠️ Internal error; nothing was changed. Please try again shortly.",
        )
        .into()
    }

    // ---- status and the SOP table ---------------------------------------------------------

    /// One line per step reached: what happened, by whom, when, how long against the standard.
    /// A step that was done is judged (within/over the standard time); a failed step says why;
    /// a step cut off or never done says so; an open step says whom it waits for, with no verdict.
    /// Steps never reached are left out.
    /// The SOP table; `failure` is said on the failed step (see [`Catalog::failure_of`]).
    pub fn sop_table(
        &self,
        order: &Order,
        failure: Option<&str>,
        now: DateTime<Utc>,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        let mut out = String::new();
        for rec in &order.steps {
            out.push_str(&self.step_line(order, failure, rec, now, name_of));
            out.push('\n');
        }
        out
    }

    fn step_line(
        &self,
        order: &Order,
        failure: Option<&str>,
        rec: &StepRecord,
        now: DateTime<Utc>,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        let head = format!("{}. {}", rec.step.number(), self.step_name(rec.step));
        let actor = match (rec.actor, rec.step.actor_role()) {
            (Some(user), _) => name_of(user),
            (None, Some(role)) => self.role(role).to_owned(),
            (None, None) => "bot".to_owned(),
        };
        let took = duration(self.lang, rec.took(now));
        let standard = duration(self.lang, rec.step.standard_time());
        let start = self.time(rec.started_at);
        let ended_by = match order.status {
            OrderStatus::Cancelled => self.pick("perintah dibatalkan", "order cancelled"),
            _ => self.pick("backup gagal", "backup failed"),
        };
        match rec.outcome {
            StepOutcome::Done => {
                let (mark, verdict) = if rec.verdict().unwrap_or(false) {
                    ("✅", self.pick("sesuai", "within"))
                } else {
                    ("⚠️", self.pick("melebihi", "over"))
                };
                format!(
                    "{mark} {head} — {actor}, {start}, {took} ({} {standard}: {verdict})",
                    self.pick("standar", "standard"),
                )
            }
            StepOutcome::Failed => {
                let reason = failure
                    .map(|r| format!(": {}", esc_user(r)))
                    .unwrap_or_default();
                match self.lang {
                    Lang::Id => {
                        format!("❌ {head} — {actor}, {start}, gagal setelah {took}{reason}")
                    }
                    Lang::En => {
                        format!("❌ {head} — {actor}, {start}, failed after {took}{reason}")
                    }
                }
            }
            StepOutcome::Stopped => match self.lang {
                Lang::Id => {
                    format!("⏹ {head} — {actor}, {start}, dihentikan setelah {took} ({ended_by})")
                }
                Lang::En => {
                    format!("⏹ {head} — {actor}, {start}, stopped after {took} ({ended_by})")
                }
            },
            StepOutcome::NotDone => match self.lang {
                Lang::Id => format!("➖ {head} — tidak dilaksanakan ({ended_by})"),
                Lang::En => format!("➖ {head} — did not happen ({ended_by})"),
            },
            StepOutcome::Open => {
                let running =
                    order.status == OrderStatus::Started && SopStep::MACHINE.contains(&rec.step);
                let command = match rec.step {
                    SopStep::Direct => " (/direct)",
                    SopStep::CreateFolder => " (/start)",
                    SopStep::Receive => " (/receive)",
                    _ => "",
                };
                match (self.lang, running) {
                    (Lang::Id, true) => format!("⏳ {head} — sedang dikerjakan bot untuk {actor}, sejak {start}, {took} berjalan (standar {standard})"),
                    (Lang::En, true) => format!("⏳ {head} — the bot is doing it for {actor}, since {start}, {took} so far (standard {standard})"),
                    (Lang::Id, false) => format!("⏳ {head} — menunggu {actor}{command}, sejak {start}, {took} berjalan (standar {standard})"),
                    (Lang::En, false) => format!("⏳ {head} — waiting for {actor}{command}, since {start}, {took} so far (standard {standard})"),
                }
            }
        }
    }

    pub fn status(
        &self,
        order: &Order,
        now: DateTime<Utc>,
        holder: Option<String>,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        let current = order.current_step();
        let step_line = current
            .map(|s| {
                format!(
                    "{} {}: {}",
                    self.pick("Langkah", "Step"),
                    s.step.number(),
                    self.step_name(s.step)
                )
            })
            .unwrap_or_else(|| match order.status {
                // One machine step finished, the next not begun yet.
                OrderStatus::Started => self
                    .pick(
                        "Bot berpindah ke langkah berikutnya",
                        "The bot is moving on to the next step",
                    )
                    .to_owned(),
                status => self.status_name(status).to_owned(),
            });
        let holder = holder
            .map(|h| format!("\n{}: {h}", self.pick("Dipegang oleh", "Held by")))
            .unwrap_or_default();
        let standard: TimeDelta = order.steps.iter().map(|s| s.step.standard_time()).sum();
        format!(
            "📊 <b>{} {}</b> — {}\n{step_line}{holder}\n{}: {} / {} {}\n\n{}",
            self.pick("Perintah", "Order"),
            order.id,
            self.status_name(order.status),
            self.pick("Waktu berjalan", "Elapsed"),
            duration(self.lang, order.elapsed(now)),
            duration(self.lang, standard),
            self.pick(
                "(waktu standar langkah yang sudah dicapai)",
                "(standard time of the steps reached)"
            ),
            self.sop_table(order, None, now, name_of)
        )
    }

    pub fn log_header(&self, date: NaiveDate) -> String {
        format!(
            "🗒 <b>{} {}</b>",
            self.pick("Log kegiatan harian", "Daily activity log"),
            self.date(date)
        )
    }

    pub fn log_empty(&self, date: NaiveDate) -> String {
        match self.lang {
            Lang::Id => format!(
                "{}\nTidak ada kegiatan backup yang tercatat pada tanggal ini.",
                self.log_header(date)
            ),
            Lang::En => format!(
                "{}\nNo backup activity recorded on this date.",
                self.log_header(date)
            ),
        }
    }

    pub fn log_entry(
        &self,
        order: &Order,
        outcome: Option<&crate::run_outcome::RunOutcome>,
        recorded_at: DateTime<Utc>,
        summary: &str,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        // A failure's reason is in the summary and on the failed step; a cancellation's is here.
        let reason = order
            .reason
            .as_deref()
            .filter(|_| order.status == OrderStatus::Cancelled)
            .map(|r| format!("\n{}: {}", self.pick("Alasan", "Reason"), esc_user(r)))
            .unwrap_or_default();
        format!(
            "<b>{} {}</b> — {} ({} {})\n{summary}{reason}\n{}",
            self.pick("Backup", "Backup"),
            order.id,
            self.status_name(order.status),
            self.pick("dicatat", "recorded"),
            self.time(recorded_at),
            self.sop_table(
                order,
                self.failure_of(order, outcome).as_deref(),
                recorded_at,
                name_of
            )
        )
    }

    pub fn restarted_during_run(&self, order: &Order) -> String {
        match self.lang {
            Lang::Id => format!("🔄 Bot dimulai ulang saat backup {} berjalan. Backup dilanjutkan; berkas yang sudah terverifikasi tidak disalin ulang.", order.id),
            Lang::En => format!("🔄 The bot restarted while backup {} was running. The backup resumes; files already verified are not copied again.", order.id),
        }
    }

    pub fn private_chat(&self) -> String {
        self.pick(
            "Bot ini bekerja di grup tim IT. Perintah-perintah di bawah dipakai di grup tersebut.",
            "This bot works in the IT team's group. The commands below are used there.",
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_spell_out_their_units() {
        assert_eq!(duration(Lang::Id, TimeDelta::seconds(0)), "0 detik");
        assert_eq!(duration(Lang::Id, TimeDelta::seconds(5)), "5 detik");
        assert_eq!(duration(Lang::Id, TimeDelta::minutes(10)), "10 menit");
        assert_eq!(
            duration(Lang::Id, TimeDelta::seconds(200)),
            "3 menit 20 detik"
        );
        assert_eq!(duration(Lang::Id, TimeDelta::hours(2)), "2 jam");
        assert_eq!(duration(Lang::Id, TimeDelta::minutes(125)), "2 jam 5 menit");
        assert_eq!(duration(Lang::En, TimeDelta::seconds(200)), "3 min 20 s");
        assert_eq!(duration(Lang::En, TimeDelta::minutes(125)), "2 h 5 min");
        assert_eq!(duration(Lang::En, TimeDelta::seconds(-3)), "0 s");
    }

    #[test]
    fn sizes_read_in_kb_mb_gb_with_the_languages_decimal_mark() {
        assert_eq!(bytes(Lang::Id, 512), "512 B");
        assert_eq!(bytes(Lang::Id, 1536), "1,5 KB");
        assert_eq!(bytes(Lang::Id, 3 << 20), "3,0 MB");
        assert_eq!(bytes(Lang::Id, (5 << 30) / 2), "2,5 GB");
        assert_eq!(bytes(Lang::En, 1536), "1.5 KB");
        assert_eq!(bytes(Lang::En, 3 << 30), "3.0 GB");
    }

    #[test]
    fn times_carry_the_zone_name() {
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 24, 1, 2, 3)
            .single()
            .expect("valid");
        let c = |tz| Catalog::new(Lang::Id, tz);
        assert_eq!(c(chrono_tz::Asia::Jakarta).time(t), "08:02:03 WIB");
        assert_eq!(c(chrono_tz::Asia::Makassar).time(t), "09:02:03 WITA");
        assert_eq!(c(chrono_tz::Asia::Jayapura).time(t), "10:02:03 WIT");
        assert_eq!(c(chrono_tz::UTC).time(t), "01:02:03 UTC");
        assert_eq!(c(chrono_tz::Europe::Berlin).time(t), "02:02:03 CET");
    }

    #[test]
    fn outside_text_is_escaped() {
        assert_eq!(esc("<b>&"), "&lt;b&gt;&amp;");
    }

    #[test]
    fn help_lists_only_the_commands_of_the_roles_held() {
        let c = Catalog::new(Lang::En, chrono_tz::Asia::Jakarta);
        let jfu = c.help(&[Role::Jfu]);
        assert!(
            jfu.contains("/start") && !jfu.contains("/order_backup") && !jfu.contains("/receive")
        );
        let kasubdit = c.help(&[Role::Kasubdit]);
        assert!(
            kasubdit.contains("/order_backup")
                && kasubdit.contains("/cancel")
                && !kasubdit.contains("/start")
        );
        assert!(c.help(&[]).contains("no role"));
        let id = Catalog::new(Lang::Id, chrono_tz::Asia::Jakarta).help(&[Role::Jfu]);
        assert!(
            id.contains("/log [hari ini|kemarin|DD-MM-YYYY|MM-YYYY]"),
            "{id}"
        );
    }
}

#[cfg(test)]
mod tests_of_orders;
