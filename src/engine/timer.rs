//! The steps' start and end times, and where a run is: written by the run and by the overlap of
//! steps 5 and 6, read by the clean-up after a stop.

use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::{tell, Progress, ProgressSender, RunFolders, StepTiming};
use crate::domain::SopStep;

/// Where the run is, for the clean-up after a stop.
#[derive(Default)]
pub(super) struct Whereabouts {
    pub(super) step: Option<SopStep>,
    pub(super) folders: Option<RunFolders>,
}

pub(super) type Shared = Arc<Mutex<Whereabouts>>;

/// The steps' start and end times; steps 5 and 6 run side by side, so it is shared.
pub(super) struct Timer {
    pub(super) steps: Mutex<Vec<StepTiming>>,
    pub(super) open: Mutex<Vec<(SopStep, chrono::DateTime<Utc>)>>,
    pub(super) shared: Shared,
}

impl Timer {
    pub(super) fn start(&self, step: SopStep, progress: &ProgressSender) {
        let at = Utc::now();
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).step = Some(step);
        lock(&self.open).push((step, at));
        tell(progress, Progress::StepStarted { step, at });
    }

    /// Ends `step` (started now if it never was: a step 6 with nothing to copy).
    pub(super) fn finish(&self, step: SopStep, progress: &ProgressSender) {
        let at = Utc::now();
        let started = {
            let mut open = lock(&self.open);
            let i = open.iter().position(|(s, _)| *s == step);
            i.map(|i| open.remove(i).1)
        };
        let started_at = match started {
            Some(t) => t,
            None => {
                tell(progress, Progress::StepStarted { step, at });
                at
            }
        };
        lock(&self.steps).push(StepTiming {
            step,
            started_at,
            ended_at: at,
        });
        tell(progress, Progress::StepFinished { step, at });
    }

    pub(super) fn into_steps(self) -> Vec<StepTiming> {
        self.steps.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
