//! The office's records: the log of a month, the month's activity as a CSV document (one row per
//! order and step), and the `/id` answer a sysadmin needs to fill in the settings.

use chrono::{DateTime, NaiveDate, Utc};

use super::{esc, zone_name, Catalog, Lang};
use crate::domain::{Month, Order, Role, StepOutcome, UserId};
use crate::run_outcome::RunOutcome;

const MONTHS_ID: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Catalog {
    /// `November 2026`.
    pub fn month(&self, m: Month) -> String {
        let names = match self.lang {
            Lang::Id => &MONTHS_ID,
            Lang::En => &MONTHS_EN,
        };
        let i = usize::try_from(m.month.clamp(1, 12) - 1).unwrap_or(0);
        format!("{} {}", names[i], m.year)
    }

    pub fn log_month_header(&self, m: Month) -> String {
        format!(
            "🗒 <b>{} {}</b>",
            self.pick("Log kegiatan bulan", "Activity log of"),
            self.month(m)
        )
    }

    pub fn log_month_empty(&self, m: Month) -> String {
        format!(
            "{}\n{}",
            self.log_month_header(m),
            self.pick(
                "Tidak ada kegiatan backup yang tercatat pada bulan ini.",
                "No backup activity recorded in this month."
            )
        )
    }

    /// One line of a month's log: the day, the order, how it ended, its summary.
    pub fn log_month_entry(&self, date: NaiveDate, order: &Order, summary: &str) -> String {
        format!(
            "{} · <b>{} {}</b> — {}\n{}",
            self.date(date),
            self.pick("Backup", "Backup"),
            order.id,
            self.status_name(order.status),
            esc(summary)
        )
    }

    pub fn bad_month(&self, arg: &str) -> String {
        match self.lang {
            Lang::Id => format!("⛔ Bulan {:?} tidak dikenali. Ketik /export untuk bulan ini, atau /export 11-2026.", esc(arg)),
            Lang::En => format!("⛔ {:?} is not a month. Type /export for this month, or /export 11-2026.", esc(arg)),
        }
    }

    pub fn export_file_name(&self, m: Month) -> String {
        match self.lang {
            Lang::Id => format!("log-backup-mailbox-{}-{:02}.csv", m.year, m.month),
            Lang::En => format!("mailbox-backup-log-{}-{:02}.csv", m.year, m.month),
        }
    }

    pub fn export_caption(&self, m: Month, orders: usize) -> String {
        match self.lang {
            Lang::Id => format!(
                "Log kegiatan backup mailbox {}: {orders} perintah, satu baris per langkah SOP.",
                self.month(m)
            ),
            Lang::En => format!(
                "Mailbox-backup activity of {}: {orders} orders, one row per SOP step.",
                self.month(m)
            ),
        }
    }

    /// The month's activity as CSV: one row per order and step, in the reader's language, times
    /// in the configured zone (named in the header). `name_of` gives plain names (no HTML);
    /// every cell is made inert for a spreadsheet.
    pub fn activity_csv(
        &self,
        orders: &[(Order, Option<RunOutcome>)],
        now: DateTime<Utc>,
        name_of: &dyn Fn(UserId) -> String,
    ) -> String {
        let zone = zone_name(self.tz, now);
        let header: Vec<String> = match self.lang {
            Lang::Id => vec![
                "perintah".into(),
                "status_perintah".into(),
                "langkah".into(),
                "nama_langkah".into(),
                "pelaksana".into(),
                "id_pelaksana".into(),
                format!("mulai ({zone})"),
                format!("selesai ({zone})"),
                "durasi_detik".into(),
                "standar_detik".into(),
                "penilaian".into(),
                "hasil".into(),
                "jumlah_mailbox".into(),
                "ukuran_byte".into(),
            ],
            Lang::En => vec![
                "order".into(),
                "order_status".into(),
                "step".into(),
                "step_name".into(),
                "actor".into(),
                "actor_id".into(),
                format!("start ({zone})"),
                format!("end ({zone})"),
                "duration_secs".into(),
                "standard_secs".into(),
                "verdict".into(),
                "outcome".into(),
                "mailboxes".into(),
                "bytes".into(),
            ],
        };
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut rows = vec![header];
        let local = |t: DateTime<Utc>| {
            t.with_timezone(&self.tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        for (order, outcome) in orders {
            let (mailboxes, bytes) = match outcome {
                Some(RunOutcome::Completed(r)) => {
                    (r.mailboxes.len().to_string(), r.bytes_copied.to_string())
                }
                _ => (String::new(), String::new()),
            };
            for s in &order.steps {
                let verdict = match (s.outcome, s.ended_at) {
                    (StepOutcome::Done, Some(_)) if s.within_standard(now) => {
                        self.pick("sesuai", "within")
                    }
                    (StepOutcome::Done, Some(_)) => self.pick("melebihi", "over"),
                    _ => "",
                };
                rows.push(vec![
                    order.id.0.to_string(),
                    self.status_name(order.status).to_owned(),
                    s.step.number().to_string(),
                    self.step_name(s.step).to_owned(),
                    // Step 8 is the bot's own; a step nobody took has no actor.
                    s.actor.map(name_of).unwrap_or_else(|| {
                        if s.step == crate::domain::SopStep::DailyLog {
                            "bot".to_owned()
                        } else {
                            String::new()
                        }
                    }),
                    s.actor.map(|a| a.0.to_string()).unwrap_or_default(),
                    local(s.started_at),
                    s.ended_at.map(local).unwrap_or_default(),
                    s.ended_at
                        .map(|_| s.took(now).num_seconds().to_string())
                        .unwrap_or_default(),
                    s.step.standard_time().num_seconds().to_string(),
                    verdict.to_owned(),
                    self.step_outcome_word(s.outcome).to_owned(),
                    mailboxes.clone(),
                    bytes.clone(),
                ]);
            }
        }
        for row in rows {
            // Writing to a Vec cannot fail.
            let _ = out.write_record(row.iter().map(|c| super::inert_cell(c)));
        }
        out.into_inner()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn step_outcome_word(&self, o: StepOutcome) -> &'static str {
        match o {
            StepOutcome::Done => self.pick("selesai", "done"),
            StepOutcome::Failed => self.pick("gagal", "failed"),
            StepOutcome::Stopped => self.pick("dihentikan", "stopped"),
            StepOutcome::NotDone => self.pick("tidak dilaksanakan", "not done"),
            StepOutcome::Open => self.pick("berjalan", "open"),
        }
    }

    /// The reminder to the Kasubdit: `days` without a received backup, the last one on `last`.
    pub fn reminder(&self, kasubdit: &str, days: u32, last: Option<NaiveDate>) -> String {
        match (self.lang, last) {
            (Lang::Id, Some(d)) => format!("⏰ {kasubdit}, sudah {days} hari sejak backup mailbox terakhir diterima ({}). Sesuai SOP, silakan perintahkan backup dengan /order_backup.", self.date(d)),
            (Lang::Id, None) => format!("⏰ {kasubdit}, belum ada backup mailbox yang diterima dalam {days} hari sejak bot dipasang. Sesuai SOP, silakan perintahkan backup dengan /order_backup."),
            (Lang::En, Some(d)) => format!("⏰ {kasubdit}, it has been {days} days since the last mailbox backup was received ({}). Per the SOP, please order one with /order_backup.", self.date(d)),
            (Lang::En, None) => format!("⏰ {kasubdit}, no mailbox backup has been received in the {days} days since the bot was set up. Per the SOP, please order one with /order_backup."),
        }
    }

    /// The `/id` answer: the person's id, the chat's, and their roles (or what to do without one).
    pub fn your_id(&self, user: UserId, chat: i64, roles: &[Role]) -> String {
        let held = roles
            .iter()
            .map(|r| self.role(*r))
            .collect::<Vec<_>>()
            .join(", ");
        match (self.lang, roles.is_empty()) {
            (Lang::Id, false) => format!("🪪 Id Telegram Anda: <code>{user}</code>\nId obrolan ini: <code>{chat}</code>\nPeran Anda: {held}"),
            (Lang::En, false) => format!("🪪 Your Telegram id: <code>{user}</code>\nThis chat's id: <code>{chat}</code>\nYour roles: {held}"),
            (Lang::Id, true) => format!("🪪 Id Telegram Anda: <code>{user}</code>\nId obrolan ini: <code>{chat}</code>\nAnda belum memiliki peran. Berikan id <code>{user}</code> kepada admin bot agar dimasukkan ke KASUBDIT_IDS, KASI_IDS atau JFU_IDS."),
            (Lang::En, true) => format!("🪪 Your Telegram id: <code>{user}</code>\nThis chat's id: <code>{chat}</code>\nYou hold no role. Give the id <code>{user}</code> to the bot's admin to be added to KASUBDIT_IDS, KASI_IDS or JFU_IDS."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{place_order, Event, Roster};

    fn roster() -> Roster {
        Roster {
            kasubdit: [UserId(1)].into(),
            kasi: [UserId(2)].into(),
            jfu: [UserId(3)].into(),
        }
    }

    #[test]
    fn the_activity_csv_has_one_row_per_step_and_quotes_what_needs_it() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T02:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let r = roster();
        let (o, _) = place_order(&r, UserId(1), None, None, t0).expect("order");
        let o = Order::from_new(crate::domain::OrderId(7), o);
        let (o, _) = o
            .apply(
                &r,
                Event::Direct {
                    by: UserId(2),
                    jfu: UserId(3),
                },
                t0 + chrono::TimeDelta::minutes(3),
            )
            .expect("direct");
        let c = Catalog::new(Lang::Id, chrono_tz::Asia::Jakarta);
        let csv = c.activity_csv(
            &[(o.clone(), None)],
            t0 + chrono::TimeDelta::minutes(10),
            &|id| format!("Agus, \"Kasi\" {id}"),
        );
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "perintah,status_perintah,langkah,nama_langkah,pelaksana,id_pelaksana,mulai (WIB),selesai (WIB),durasi_detik,standar_detik,penilaian,hasil,jumlah_mailbox,ukuran_byte");
        // Steps 1 and 2 done, step 3 open (waiting for the JFU).
        assert_eq!(lines.len(), 4, "{csv}");
        assert!(lines[1].starts_with("7,"), "{}", lines[1]);
        assert!(
            lines[2].contains(",2026-11-24 09:00:00,2026-11-24 09:03:00,180,300,sesuai,selesai,"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].contains("\"Agus, \"\"Kasi\"\" 2\""),
            "quoted: {}",
            lines[2]
        );
        assert!(lines[3].ends_with(",,,600,,berjalan,,"), "{}", lines[3]);
        // A name that a spreadsheet would take for a formula is shown as text.
        let csv = c.activity_csv(&[(o, None)], t0, &|_| "=HYPERLINK(\"x\")".into());
        let mut cells = csv::Reader::from_reader(csv.as_bytes());
        for row in cells.records() {
            let row = row.expect("row");
            assert_eq!(&row[4], "'=HYPERLINK(\"x\")");
        }
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_made_text() {
        for (cell, shown) in [
            ("=1+1", "'=1+1"),
            ("+62 812", "'+62 812"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("\u{202E}=1", "'=1"),
            ("Joko & Tim", "Joko & Tim"),
            ("", ""),
        ] {
            assert_eq!(super::super::inert_cell(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn the_id_answer_tells_a_person_without_a_role_what_to_do() {
        let c = Catalog::new(Lang::Id, chrono_tz::Asia::Jakarta);
        let none = c.your_id(UserId(42), -100, &[]);
        assert!(
            none.contains("<code>42</code>") && none.contains("admin"),
            "{none}"
        );
        let kasi = c.your_id(UserId(2), -100, &[Role::Kasi]);
        assert!(
            kasi.contains("Kasi Portal Web") && kasi.contains("-100"),
            "{kasi}"
        );
        assert_eq!(
            c.month(Month {
                year: 2026,
                month: 11
            }),
            "November 2026"
        );
    }
}
