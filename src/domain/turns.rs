//! Whose message goes to the group next. Telegram takes about 20 messages a minute for a whole
//! group, so one person's commands must not hold up another person's answer: each person being
//! answered has a lane, and the bot's own messages (the procedure's, a run's) one more. The next
//! message is the oldest of the lane served longest ago, so a newcomer goes first and busy lanes
//! take turns.
//!
//! Messages are also paced evenly under the limit (a burst of a few, then one every few seconds):
//! twenty at once would leave the group silent for the rest of the minute, and whoever asks then
//! would wait that long however fair the order. No I/O: the Telegram adapter asks and waits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::roles::UserId;

const MINUTE: Duration = Duration::from_secs(60);

/// Whose message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The bot's own: the procedure's messages, a run's progress.
    Bot,
    /// The answer to this person's command.
    Person(UserId),
}

/// At most `per_minute` messages in any minute, spread out: a token bucket of a few messages
/// (kept as the "theoretical arrival time" of the next one, GCRA).
#[derive(Debug)]
struct Pace {
    interval: Duration,
    /// How far ahead of its even slot a message may go: the burst.
    tolerance: Duration,
    /// The even slot of the next message; `None` before the first.
    slot: Option<Instant>,
}

impl Pace {
    fn new(per_minute: u32) -> Pace {
        let per_minute = per_minute.max(1);
        let burst = (per_minute / 10).clamp(1, 3);
        // A burst plus the steady rate stays within the minute's limit: rounded up and a hair
        // more, so the last of a minute never lands on the first's anniversary.
        let steady = u64::from((per_minute - burst).max(1));
        let interval = Duration::from_nanos((MINUTE.as_nanos() as u64).div_ceil(steady) + 1);
        Pace {
            interval,
            tolerance: interval * (burst - 1),
            slot: None,
        }
    }

    /// The earliest a message may go.
    fn ready_at(&self, now: Instant) -> Instant {
        self.slot
            .and_then(|s| s.checked_sub(self.tolerance))
            .map_or(now, |t| t.max(now))
    }

    fn spend(&mut self, now: Instant) {
        self.slot = Some(self.slot.map_or(now, |s| s.max(now)) + self.interval);
    }
}

/// A message's place among those waiting to go.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// What a waiting message does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Send it now.
    Go,
    /// It goes next, at this instant.
    NextAt(Instant),
    /// Others go first: ask again when one of them has gone.
    AfterOthers,
}

#[derive(Debug)]
pub struct Turns {
    pace: Pace,
    /// The messages waiting, in the order they came, each with its lane.
    waiting: BTreeMap<u64, Lane>,
    /// When each lane last sent; a lane idle for a minute is forgotten (it ranks as new).
    served: HashMap<Lane, Instant>,
    tickets: u64,
}

impl Turns {
    /// Turns for a group that takes `per_minute` messages a minute.
    pub fn new(per_minute: u32) -> Turns {
        Turns {
            pace: Pace::new(per_minute),
            waiting: BTreeMap::new(),
            served: HashMap::new(),
            tickets: 0,
        }
    }

    /// A message of `lane` waits to go.
    pub fn join(&mut self, lane: Lane) -> Ticket {
        self.tickets += 1;
        self.waiting.insert(self.tickets, lane);
        Ticket(self.tickets)
    }

    /// A message no longer waits (its sender gave up).
    pub fn leave(&mut self, ticket: Ticket) {
        self.waiting.remove(&ticket.0);
    }

    /// Whether the message of `ticket` may go at `now`; `Go` takes the turn.
    pub fn ask(&mut self, ticket: &Ticket, now: Instant) -> Turn {
        if self.next() != Some(ticket.0) {
            return Turn::AfterOthers;
        }
        let at = self.pace.ready_at(now);
        if at > now {
            return Turn::NextAt(at);
        }
        self.pace.spend(now);
        if let Some(lane) = self.waiting.remove(&ticket.0) {
            self.served.insert(lane, now);
        }
        let waiting: Vec<Lane> = self.waiting.values().copied().collect();
        self.served
            .retain(|l, t| now.saturating_duration_since(*t) < MINUTE || waiting.contains(l));
        Turn::Go
    }

    /// The ticket whose turn it is: the oldest message of the lane served longest ago (never
    /// served first), the older message first between equals.
    fn next(&self) -> Option<u64> {
        let mut heads: HashMap<Lane, u64> = HashMap::new();
        for (&t, &lane) in &self.waiting {
            heads.entry(lane).or_insert(t);
        }
        heads
            .into_iter()
            .min_by_key(|(lane, t)| (self.served.get(lane).copied(), *t))
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Sends every waiting message as soon as it may go, until `until`; returns who sent when.
    fn run(
        turns: &mut Turns,
        tickets: &mut Vec<(Lane, Ticket)>,
        from: Instant,
        until: Instant,
    ) -> Vec<(Lane, Instant)> {
        let mut sent = Vec::new();
        let mut now = from;
        while now < until && !tickets.is_empty() {
            let mut next_at = until;
            let mut went = None;
            for (i, (_, t)) in tickets.iter().enumerate() {
                match turns.ask(t, now) {
                    Turn::Go => {
                        went = Some(i);
                        break;
                    }
                    Turn::NextAt(at) => {
                        next_at = at;
                        break;
                    }
                    Turn::AfterOthers => {}
                }
            }
            match went {
                Some(i) => sent.push((tickets.remove(i).0, now)),
                None => now = next_at,
            }
        }
        sent
    }

    #[test]
    fn a_newcomer_goes_before_a_flood_and_busy_lanes_take_turns() {
        let mut turns = Turns::new(20);
        let t0 = Instant::now();
        let (jfu, jfu2, kasubdit) = (UserId(3), UserId(4), UserId(1));
        let mut tickets: Vec<(Lane, Ticket)> = Vec::new();
        for _ in 0..10 {
            for who in [jfu, jfu2] {
                let lane = Lane::Person(who);
                tickets.push((lane, turns.join(lane)));
            }
        }
        let sent = run(&mut turns, &mut tickets, t0, t0 + 20 * SECOND);
        // Round robin between the two.
        let lanes: Vec<Lane> = sent.iter().map(|(l, _)| *l).collect();
        assert!(lanes.len() >= 6, "{lanes:?}");
        assert!(lanes.windows(2).all(|w| w[0] != w[1]), "{lanes:?}");
        // The Kasubdit asks: his answer is the next to go, within one pacing interval.
        let asked = t0 + 20 * SECOND;
        let lane = Lane::Person(kasubdit);
        tickets.push((lane, turns.join(lane)));
        let sent = run(&mut turns, &mut tickets, asked, asked + 10 * SECOND);
        assert_eq!(sent[0].0, lane);
        assert!(
            sent[0].1 - asked <= Duration::from_millis(3_500),
            "{:?}",
            sent[0].1 - asked
        );
    }

    #[test]
    fn never_more_than_the_limit_in_any_minute_and_never_a_long_silence() {
        for per_minute in [1, 5, 20, 30, 60] {
            let mut turns = Turns::new(per_minute);
            let t0 = Instant::now();
            let mut tickets: Vec<(Lane, Ticket)> = (0..per_minute * 3)
                .map(|i| {
                    let lane = Lane::Person(UserId(i64::from(i % 3)));
                    (lane, turns.join(lane))
                })
                .collect();
            let sent: Vec<Instant> = run(&mut turns, &mut tickets, t0, t0 + 5 * MINUTE)
                .into_iter()
                .map(|(_, at)| at)
                .collect();
            assert_eq!(sent.len() as u32, per_minute * 3, "{per_minute}/min");
            // As teloxide's Throttle counts: the sends of the minute up to each send.
            for (i, at) in sent.iter().enumerate() {
                let in_minute = sent[..=i].iter().filter(|t| **t + MINUTE >= *at).count();
                assert!(
                    in_minute as u32 <= per_minute,
                    "{per_minute}/min: {in_minute} in a minute"
                );
            }
            let longest = sent
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default();
            let steady = (per_minute - (per_minute / 10).clamp(1, 3)).max(1);
            assert!(
                longest <= MINUTE / steady + SECOND / 1000,
                "{per_minute}/min: {longest:?}"
            );
        }
    }

    #[test]
    fn a_burst_goes_at_once_and_a_message_that_gave_up_does_not_hold_the_others() {
        let mut turns = Turns::new(20);
        let t0 = Instant::now();
        let a = turns.join(Lane::Bot);
        assert_eq!(turns.ask(&a, t0), Turn::Go);
        let b = turns.join(Lane::Bot);
        let c = turns.join(Lane::Person(UserId(1)));
        // The person's lane was never served: it goes before the bot's older message.
        assert_eq!(turns.ask(&b, t0), Turn::AfterOthers);
        assert_eq!(turns.ask(&c, t0), Turn::Go);
        // The burst (two at 20 a minute) is spent: the next waits for its slot.
        assert!(matches!(turns.ask(&b, t0), Turn::NextAt(at) if at > t0));
        let d = turns.join(Lane::Person(UserId(2)));
        assert!(matches!(turns.ask(&d, t0), Turn::NextAt(_)));
        assert_eq!(turns.ask(&b, t0), Turn::AfterOthers);
        turns.leave(d);
        assert!(matches!(turns.ask(&b, t0), Turn::NextAt(_)));
        assert_eq!(turns.ask(&b, t0 + 4 * SECOND), Turn::Go);
    }
}
