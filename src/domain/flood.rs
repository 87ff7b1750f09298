//! How many commands the bot answers in the group, so that a flood cannot silence it: the group
//! takes about 20 messages a minute, shared in turns ([`super::turns`]), and 200 refusals to
//! someone without a role would still fill them for ten minutes.
//!
//! Someone without a role gets one answer per [`OUTSIDER_WINDOW`], and all of them together
//! [`OUTSIDERS_PER_MINUTE`]: the rest is dropped (and logged) before it costs a message. A person
//! with a role gets up to [`MEMBER_PER_MINUTE`] answers a minute, far above what a person types.
//! Whatever the role, at most [`BACKLOG`] of a person's commands wait to be answered: the rest
//! are dropped, and a person with a role is told once to slow down. No I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::roles::UserId;

pub const OUTSIDER_WINDOW: Duration = Duration::from_secs(30);
pub const OUTSIDERS_PER_MINUTE: usize = 3;
pub const MEMBER_PER_MINUTE: usize = 20;
/// Commands of one person being answered or waiting for it: a few typed in a row are all
/// answered, a flood's backlog stays this short.
pub const BACKLOG: usize = 3;
const MINUTE: Duration = Duration::from_secs(60);

/// What to do with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Answer it, then say [`FloodGuard::done`].
    Answer,
    /// Dropped, the first of a burst from a person with a role: tell them once to slow down.
    SlowDown,
    /// Dropped without a word; `first` is the first drop of this person's burst (logged as a
    /// warning).
    Drop { first: bool },
}

#[derive(Debug, Default)]
pub struct FloodGuard {
    /// Answers per person in the last minute.
    answered: HashMap<UserId, VecDeque<Instant>>,
    /// Answers to people without a role in the last minute.
    outsiders: VecDeque<Instant>,
    /// Commands answered and not done yet, per person.
    open: HashMap<UserId, usize>,
    /// When each person's command was last dropped: drops less than a minute apart are one
    /// burst, which earns one notice however long it goes on.
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
        let backlog = self.open.get(&by).copied().unwrap_or(0);
        let allowed = backlog < BACKLOG
            && if has_role {
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
            *self.open.entry(by).or_default() += 1;
            return Admission::Answer;
        }
        // Keep the maps small: people who stopped long ago are forgotten.
        self.answered.retain(|_, t| !t.is_empty());
        self.dropping
            .retain(|_, last| now.saturating_duration_since(*last) < MINUTE);
        let first = self.dropping.insert(by, now).is_none();
        if first && has_role {
            Admission::SlowDown
        } else {
            Admission::Drop { first }
        }
    }

    /// A command [`admit`](Self::admit) answered is done.
    pub fn done(&mut self, by: UserId) {
        if let Some(n) = self.open.get_mut(&by) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&by);
            }
        }
    }

    /// How many answered commands are not done yet, of everyone.
    pub fn open(&self) -> usize {
        self.open.values().sum()
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
            g.done(kasi);
        }
        let at = t0 + Duration::from_secs(30);
        assert_eq!(g.admit(kasi, true, at), Admission::SlowDown);
        assert_eq!(g.admit(kasi, true, at), Admission::Drop { first: false });
        assert_eq!(
            g.admit(kasi, true, t0 + Duration::from_secs(61)),
            Admission::Answer
        );
    }

    #[test]
    fn a_backlog_is_cut_to_a_few_and_one_notice_whatever_the_role() {
        let mut g = FloodGuard::default();
        let t0 = Instant::now();
        let kasubdit = UserId(1);
        let stranger = UserId(9);
        let mut said = Vec::new();
        // Three a second for two minutes, one done a second.
        for i in 0..360u64 {
            let at = t0 + Duration::from_millis(333 * i);
            said.push(g.admit(kasubdit, true, at));
            if i % 3 == 0 {
                g.done(kasubdit);
            }
            assert!(g.open() <= BACKLOG);
        }
        let answered = said.iter().filter(|a| **a == Admission::Answer).count();
        let notices = said.iter().filter(|a| **a == Admission::SlowDown).count();
        assert!(answered <= 2 * MEMBER_PER_MINUTE, "{answered}");
        assert_eq!(notices, 1, "one notice for the whole burst");
        // Done with all of them, the next is answered.
        for _ in 0..BACKLOG {
            g.done(kasubdit);
        }
        assert_eq!(g.open(), 0);
        let later = t0 + Duration::from_secs(200);
        assert_eq!(g.admit(kasubdit, true, later), Admission::Answer);
        // Someone without a role is never told: a notice to each of many strangers is a flood.
        assert_eq!(g.admit(stranger, false, later), Admission::Answer);
        assert_eq!(
            g.admit(stranger, false, later),
            Admission::Drop { first: true }
        );
    }
}
