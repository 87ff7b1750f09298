//! How many commands the bot answers in the group, so that a flood cannot silence it: every
//! answer waits its turn under Telegram's limit for the group (about 20 a minute), and 200
//! refusals to someone without a role would push the Kasubdit's `/status` ten minutes back.
//!
//! Someone without a role gets one answer per [`OUTSIDER_WINDOW`], and all of them together
//! [`OUTSIDERS_PER_MINUTE`]: the rest is dropped (and logged) before it costs a message. A person
//! with a role gets up to [`MEMBER_PER_MINUTE`] answers a minute, far above what a person types,
//! so a role holder's answer never waits behind more than a handful of others. No I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::roles::UserId;

pub const OUTSIDER_WINDOW: Duration = Duration::from_secs(30);
pub const OUTSIDERS_PER_MINUTE: usize = 3;
pub const MEMBER_PER_MINUTE: usize = 20;
const MINUTE: Duration = Duration::from_secs(60);

/// What to do with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Answer,
    /// Dropped; `first` is the first drop of this person's burst (logged as a warning).
    Drop {
        first: bool,
    },
}

#[derive(Debug, Default)]
pub struct FloodGuard {
    /// Answers per person in the last minute.
    answered: HashMap<UserId, VecDeque<Instant>>,
    /// Answers to people without a role in the last minute.
    outsiders: VecDeque<Instant>,
    /// People whose commands are being dropped now.
    dropping: HashMap<UserId, Instant>,
}

fn forget_older(times: &mut VecDeque<Instant>, now: Instant, age: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= age)
    {
        times.pop_front();
    }
}

impl FloodGuard {
    /// Whether to answer a command from `by` (who holds a role or not) at `now`.
    pub fn admit(&mut self, by: UserId, has_role: bool, now: Instant) -> Admission {
        forget_older(&mut self.outsiders, now, MINUTE);
        let mine = self.answered.entry(by).or_default();
        forget_older(mine, now, MINUTE);
        let allowed = if has_role {
            mine.len() < MEMBER_PER_MINUTE
        } else {
            let last = mine.back().copied();
            last.is_none_or(|t| now.saturating_duration_since(t) >= OUTSIDER_WINDOW)
                && self.outsiders.len() < OUTSIDERS_PER_MINUTE
        };
        if allowed {
            mine.push_back(now);
            if !has_role {
                self.outsiders.push_back(now);
            }
            self.dropping.remove(&by);
            return Admission::Answer;
        }
        // Keep the map small: people who stopped long ago are forgotten.
        self.answered.retain(|_, t| !t.is_empty());
        self.dropping
            .retain(|_, since| now.saturating_duration_since(*since) < MINUTE);
        let first = !self.dropping.contains_key(&by);
        self.dropping.entry(by).or_insert(now);
        Admission::Drop { first }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_outsiders_gets_a_few_answers_and_members_keep_theirs() {
        let mut g = FloodGuard::default();
        let t0 = Instant::now();
        let stranger = UserId(9);
        let kasubdit = UserId(1);
        let mut answered = 0;
        for i in 0..200u64 {
            let at = t0 + Duration::from_millis(50 * i);
            if g.admit(stranger, false, at) == Admission::Answer {
                answered += 1;
            }
        }
        assert_eq!(answered, 1, "one answer per window");
        assert_eq!(
            g.admit(kasubdit, true, t0 + Duration::from_secs(10)),
            Admission::Answer
        );
        // After the window, the stranger is answered once more.
        assert_eq!(
            g.admit(
                stranger,
                false,
                t0 + OUTSIDER_WINDOW + Duration::from_secs(1)
            ),
            Admission::Answer
        );
        // Many strangers together get at most a few answers a minute.
        let t1 = t0 + Duration::from_secs(120);
        let answered = (100..200)
            .filter(|id| g.admit(UserId(*id), false, t1) == Admission::Answer)
            .count();
        assert_eq!(answered, OUTSIDERS_PER_MINUTE);
        assert_eq!(g.admit(kasubdit, true, t1), Admission::Answer);
    }

    #[test]
    fn a_member_is_limited_far_above_typing_speed_and_the_first_drop_is_marked() {
        let mut g = FloodGuard::default();
        let t0 = Instant::now();
        let kasi = UserId(2);
        for i in 0..MEMBER_PER_MINUTE as u64 {
            assert_eq!(
                g.admit(kasi, true, t0 + Duration::from_secs(i)),
                Admission::Answer
            );
        }
        let at = t0 + Duration::from_secs(30);
        assert_eq!(g.admit(kasi, true, at), Admission::Drop { first: true });
        assert_eq!(g.admit(kasi, true, at), Admission::Drop { first: false });
        assert_eq!(
            g.admit(kasi, true, t0 + Duration::from_secs(61)),
            Admission::Answer
        );
    }
}
