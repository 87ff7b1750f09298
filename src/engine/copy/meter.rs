//! Counts bytes and files across the copy's streams and turns them into progress events: the
//! recent rate (zero when nothing arrives), the ETA, and how long since the last byte.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::manifest::ServerFile;
use crate::engine::{tell, Progress, ProgressSender};

/// Progress events no more often than this (the last one of a file always goes out).
pub(super) const TELL_EVERY: Duration = Duration::from_millis(200);

/// Counts bytes and files across the streams and turns them into progress events.
pub(super) struct Meter {
    progress: ProgressSender,
    files_total: usize,
    bytes_total: u64,
    state: Mutex<MeterState>,
}

struct MeterState {
    files_done: usize,
    bytes_done: u64,
    transferred: u64,
    last_told: Option<Instant>,
    last_byte: Instant,
    /// `(when, transferred)` over the last [`RATE_WINDOW`]: the rate shown is the recent one,
    /// so a stall shows as a falling rate, not a frozen one.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Meter {
    pub(super) fn new(
        files: &[ServerFile],
        files_done: usize,
        bytes_done: u64,
        progress: ProgressSender,
    ) -> Self {
        let now = Instant::now();
        Meter {
            progress,
            files_total: files.len(),
            bytes_total: files.iter().map(|f| f.size).sum(),
            state: Mutex::new(MeterState {
                files_done,
                bytes_done,
                transferred: 0,
                last_told: None,
                last_byte: now,
                samples: std::collections::VecDeque::from([(now, 0)]),
            }),
        }
    }

    pub(super) fn add(&self, bytes: u64, files: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bytes_done += bytes;
        st.transferred += bytes;
        st.files_done += files;
        st.last_byte = Instant::now();
        let due = st.last_told.is_none_or(|t| t.elapsed() >= TELL_EVERY);
        if files > 0 || due {
            st.last_told = Some(Instant::now());
            self.tell(&mut st);
        }
    }

    /// Work that is not bytes from the server but shows the copy is not stuck (hashing a
    /// partial copy before resuming it).
    pub(super) fn alive(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_byte = Instant::now();
    }

    /// How long since the last byte arrived.
    pub(super) fn idle(&self) -> Duration {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_byte.elapsed()
    }

    pub(super) fn tell_now(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.tell(&mut st);
    }

    fn tell(&self, st: &mut MeterState) {
        let now = Instant::now();
        st.samples.push_back((now, st.transferred));
        while st.samples.len() > 2 && now.duration_since(st.samples[0].0) > RATE_WINDOW {
            st.samples.pop_front();
        }
        let (since, then) = st.samples[0];
        let secs = now.duration_since(since).as_secs_f64().max(0.001);
        // Nothing for two seconds: nothing is arriving now, whatever the window's average says.
        let rate = if st.last_byte.elapsed() > Duration::from_secs(2) {
            0.0
        } else {
            (st.transferred - then) as f64 / secs
        };
        let left = self.bytes_total.saturating_sub(st.bytes_done);
        tell(
            &self.progress,
            Progress::Copy {
                files_done: st.files_done,
                files_total: self.files_total,
                bytes_done: st.bytes_done,
                bytes_total: self.bytes_total,
                rate,
                eta_secs: (rate > 1.0).then(|| (left as f64 / rate) as u64),
            },
        );
    }

    pub(super) fn transferred(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .transferred
    }
}
