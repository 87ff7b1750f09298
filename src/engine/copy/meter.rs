//! Counts bytes and files across the copy's streams and turns them into progress events: the
//! recent rate (zero when nothing arrives), the ETA, and how long since the last byte.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::manifest::ServerFile;
use crate::engine::{tell, Progress, ProgressSender};

/// Progress events no more often than this (the last one of a file always goes out).
pub(super) const TELL_EVERY: Duration = Duration::from_millis(200);

/// Counts bytes and files across the streams and turns them into progress events.
pub(crate) struct Meter {
    progress: ProgressSender,
    state: Mutex<MeterState>,
}

struct MeterState {
    /// The files known so far: all of them, or (steps 5 and 6 overlapped) those exported so far.
    files_total: usize,
    bytes_total: u64,
    /// Exports finished and of all, and when this run's first export started: while step 5 runs
    /// beside the copy, the ETA is the whole run's.
    exports: Option<(usize, usize, Instant, usize)>,
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
    pub(crate) fn new(
        files: &[ServerFile],
        files_done: usize,
        bytes_done: u64,
        progress: ProgressSender,
    ) -> Self {
        let now = Instant::now();
        Meter {
            progress,
            state: Mutex::new(MeterState {
                files_total: files.len(),
                bytes_total: files.iter().map(|f| f.size).sum(),
                exports: None,
                files_done,
                bytes_done,
                transferred: 0,
                last_told: None,
                last_byte: now,
                samples: std::collections::VecDeque::from([(now, 0)]),
            }),
        }
    }

    /// One more file to copy (exported while the copy runs).
    pub(crate) fn expect(&self, size: u64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.files_total += 1;
        st.bytes_total += size;
    }

    /// Exports done (`done` of `total`; `before` of them by an earlier run), for the ETA.
    pub(crate) fn exports(&self, done: usize, total: usize, before: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let since = st.exports.map(|e| e.2).unwrap_or_else(Instant::now);
        st.exports = Some((done, total, since, before));
    }

    /// A file found already copied and verified (by an earlier run): counted as done.
    pub(crate) fn present(&self, size: u64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bytes_done += size;
        st.files_done += 1;
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
    pub(crate) fn alive(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_byte = Instant::now();
    }

    /// How long since the last byte arrived.
    pub(crate) fn idle(&self) -> Duration {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.last_byte.elapsed()
    }

    pub(crate) fn tell_now(&self) {
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
        let eta_secs = eta(st, rate);
        tell(
            &self.progress,
            Progress::Copy {
                files_done: st.files_done,
                files_total: st.files_total,
                bytes_done: st.bytes_done,
                bytes_total: st.bytes_total,
                rate,
                eta_secs,
            },
        );
    }

    pub(crate) fn transferred(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .transferred
    }
}

/// Seconds left for the whole of what is being copied: while exports still run, the later of
/// their end (at this run's export pace) and the copy of what they will add (at the mean archive
/// size so far and the copy's recent rate).
fn eta(st: &MeterState, rate: f64) -> Option<u64> {
    let mut left_bytes = st.bytes_total.saturating_sub(st.bytes_done) as f64;
    let mut exports_left = None;
    if let Some((done, total, since, before)) = st.exports {
        let remaining = total.saturating_sub(done);
        if remaining > 0 {
            let mean = st.bytes_total as f64 / st.files_total.max(1) as f64;
            left_bytes += remaining as f64 * mean;
            let here = done.saturating_sub(before);
            exports_left =
                (here > 0).then(|| since.elapsed().as_secs_f64() / here as f64 * remaining as f64);
        }
    }
    let copy_left = (rate > 1.0).then(|| left_bytes / rate);
    match (exports_left, copy_left) {
        (Some(e), Some(c)) => Some(e.max(c) as u64),
        (e, c) => e.or(c).map(|s| s as u64),
    }
}
