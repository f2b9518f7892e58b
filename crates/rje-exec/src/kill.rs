//! The kill of a command, written once: TERM, up to a grace period for
//! everything to go (over as soon as it has), then KILL, sent again until
//! everything is gone or a bound has passed.
//!
//! What is signalled, and how "gone" is learnt, are the caller's
//! ([`KillTarget`]): a plain job's group and its subreaper's descendants,
//! looked for in /proc; a durable job's end, which its supervisor writes
//! once nothing of the job is left; the shell a supervisor waits for. The
//! same steps run in the worker ([`KillSequence::run`]) and in a job's
//! supervisor process, which has no runtime
//! ([`KillSequence::run_blocking`]).

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rje_domain::ExitReport;

/// How a kill goes: TERM, up to `grace` for everything to go, then KILL,
/// until everything is gone or `confirm_within` has passed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KillSequence {
    /// Between TERM and KILL: time for the command to clean up.
    pub grace: Duration,
    /// After the first KILL: how long to try to confirm that everything
    /// is gone before giving up ([`ExitReport::Unconfirmed`]).
    /// `Duration::MAX`: no bound.
    pub confirm_within: Duration,
    /// After each KILL, how long everything is waited for before KILL is
    /// sent again (to reach what was forked since). A target whose wait of
    /// `Duration::MAX` lasts until the end sends KILL once.
    pub kill_every: Duration,
}

/// What a kill ends, as [`KillSequence::run`] sees it.
pub(crate) trait KillTarget {
    /// Sends `signal` to everything that is to end.
    fn signal(&mut self, signal: Signal);

    /// Waits up to `within` for everything to be gone, returning as soon
    /// as it is: whether it is.
    fn wait_gone(&mut self, within: Duration) -> impl Future<Output = bool> + Send;

    /// The grace is over and something is left: KILL comes next.
    fn outlived_grace(&mut self) {}
}

/// What a kill ends, for a caller without a runtime
/// ([`KillSequence::run_blocking`]): its waits block.
pub(crate) trait BlockingKillTarget {
    /// Sends `signal` to everything that is to end.
    fn signal(&mut self, signal: Signal);

    /// Waits up to `within` for everything to be gone, returning as soon
    /// as it is: whether it is.
    fn wait_gone(&mut self, within: Duration) -> bool;

    /// The grace is over and something is left: KILL comes next.
    fn outlived_grace(&mut self) {}
}

impl KillSequence {
    /// Ends `target`: TERM, up to the grace for it to go, then KILL, again
    /// after each `kill_every`, until it is gone ([`ExitReport::Confirmed`])
    /// or `confirm_within` has passed since the first KILL
    /// ([`ExitReport::Unconfirmed`]).
    ///
    /// Awaits nothing but `target`: [`KillSequence::run_blocking`] runs
    /// these very steps, with waits that are over when they return.
    pub(crate) async fn run(&self, target: &mut impl KillTarget) -> ExitReport {
        target.signal(Signal::SIGTERM);
        if target.wait_gone(self.grace).await {
            return ExitReport::Confirmed;
        }
        target.outlived_grace();
        let give_up = Instant::now().checked_add(self.confirm_within);
        loop {
            // Each round also reaches what was forked since the last one.
            target.signal(Signal::SIGKILL);
            if target.wait_gone(self.kill_every).await {
                return ExitReport::Confirmed;
            }
            if give_up.is_some_and(|at| Instant::now() >= at) {
                return ExitReport::Unconfirmed;
            }
        }
    }

    /// [`KillSequence::run`] on this thread, for a process without a
    /// runtime (a job's supervisor): the waits block.
    pub(crate) fn run_blocking(&self, target: &mut impl BlockingKillTarget) -> ExitReport {
        let mut target = Blocking(target);
        let run = pin!(self.run(&mut target));
        match run.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(report) => report,
            // `run` awaits only the target, whose every wait here is over
            // when it returns.
            Poll::Pending => unreachable!("a blocking kill waited on something else"),
        }
    }
}

/// A [`BlockingKillTarget`] as a [`KillTarget`]: each wait is done by the
/// time its future is made.
struct Blocking<'a, T>(&'a mut T);

impl<T: BlockingKillTarget> KillTarget for Blocking<'_, T> {
    fn signal(&mut self, signal: Signal) {
        self.0.signal(signal);
    }

    fn wait_gone(&mut self, within: Duration) -> impl Future<Output = bool> + Send {
        std::future::ready(self.0.wait_gone(within))
    }

    fn outlived_grace(&mut self) {
        self.0.outlived_grace();
    }
}

/// Asks `gone` until it says so or `within` has passed, sleeping `every`
/// in between (less at the end): whether it said so. A
/// [`BlockingKillTarget::wait_gone`] for targets that can only be looked
/// at.
pub(crate) fn poll_gone(within: Duration, every: Duration, mut gone: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now().checked_add(within);
    loop {
        if gone() {
            return true;
        }
        let left = deadline.map_or(every, |at| at.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(every));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that ends on the signals it is told to, and keeps what it
    /// was sent and how long it was waited for. A wait while it lives
    /// lasts as long as it may.
    #[derive(Default)]
    struct Fake {
        ends_on_term: bool,
        ends_on_kill: bool,
        gone: bool,
        sent: Vec<Signal>,
        waits: Vec<Duration>,
        outlived: usize,
    }

    impl BlockingKillTarget for Fake {
        fn signal(&mut self, signal: Signal) {
            self.sent.push(signal);
            self.gone |= match signal {
                Signal::SIGTERM => self.ends_on_term,
                Signal::SIGKILL => self.ends_on_kill,
                _ => false,
            };
        }

        fn wait_gone(&mut self, within: Duration) -> bool {
            self.waits.push(within);
            if !self.gone {
                std::thread::sleep(within);
            }
            self.gone
        }

        fn outlived_grace(&mut self) {
            self.outlived += 1;
        }
    }

    impl KillTarget for Fake {
        fn signal(&mut self, signal: Signal) {
            BlockingKillTarget::signal(self, signal);
        }

        async fn wait_gone(&mut self, within: Duration) -> bool {
            BlockingKillTarget::wait_gone(self, within)
        }

        fn outlived_grace(&mut self) {
            BlockingKillTarget::outlived_grace(self);
        }
    }

    const SEQUENCE: KillSequence = KillSequence {
        grace: Duration::from_millis(20),
        confirm_within: Duration::from_millis(60),
        kill_every: Duration::from_millis(10),
    };

    #[test]
    fn what_ends_on_term_gets_no_kill() {
        let mut target = Fake {
            ends_on_term: true,
            ..Fake::default()
        };
        assert_eq!(SEQUENCE.run_blocking(&mut target), ExitReport::Confirmed);
        assert_eq!(target.sent, [Signal::SIGTERM]);
        assert_eq!(target.waits, [SEQUENCE.grace]);
        assert_eq!(target.outlived, 0);
    }

    #[test]
    fn what_survives_term_is_killed_after_the_grace() {
        let mut target = Fake {
            ends_on_kill: true,
            ..Fake::default()
        };
        assert_eq!(SEQUENCE.run_blocking(&mut target), ExitReport::Confirmed);
        assert_eq!(target.sent, [Signal::SIGTERM, Signal::SIGKILL]);
        assert_eq!(target.waits, [SEQUENCE.grace, SEQUENCE.kill_every]);
        assert_eq!(target.outlived, 1);
    }

    #[test]
    fn what_survives_kill_is_killed_again_until_the_bound_then_unconfirmed() {
        let sequence = KillSequence {
            confirm_within: Duration::from_millis(200),
            kill_every: Duration::from_millis(1),
            ..SEQUENCE
        };
        let mut target = Fake::default();
        let started = Instant::now();
        assert_eq!(sequence.run_blocking(&mut target), ExitReport::Unconfirmed);
        assert!(started.elapsed() >= sequence.grace + sequence.confirm_within);
        assert_eq!(target.sent[0], Signal::SIGTERM);
        let kills = &target.sent[1..];
        assert!(kills.len() >= 2, "KILL again each round: {:?}", target.sent);
        assert!(kills.iter().all(|&signal| signal == Signal::SIGKILL));
        assert_eq!(target.outlived, 1);
    }

    #[test]
    fn no_time_to_confirm_still_sends_kill_once() {
        let sequence = KillSequence {
            confirm_within: Duration::ZERO,
            ..SEQUENCE
        };
        let mut target = Fake::default();
        assert_eq!(sequence.run_blocking(&mut target), ExitReport::Unconfirmed);
        assert_eq!(target.sent, [Signal::SIGTERM, Signal::SIGKILL]);
    }

    #[test]
    fn without_a_bound_kill_is_sent_once_and_its_end_waited_for() {
        let sequence = KillSequence {
            confirm_within: Duration::MAX,
            kill_every: Duration::MAX,
            ..SEQUENCE
        };
        let mut target = Fake {
            ends_on_kill: true,
            ..Fake::default()
        };
        assert_eq!(sequence.run_blocking(&mut target), ExitReport::Confirmed);
        assert_eq!(target.sent, [Signal::SIGTERM, Signal::SIGKILL]);
        assert_eq!(target.waits, [SEQUENCE.grace, Duration::MAX]);
    }

    #[tokio::test]
    async fn the_async_driver_takes_the_same_steps() {
        for (ends_on_term, ends_on_kill) in [(true, false), (false, true), (false, false)] {
            let mut blocking = Fake {
                ends_on_term,
                ends_on_kill,
                ..Fake::default()
            };
            let mut awaited = Fake {
                ends_on_term,
                ends_on_kill,
                ..Fake::default()
            };
            let sequence = KillSequence {
                kill_every: SEQUENCE.confirm_within,
                ..SEQUENCE
            };
            assert_eq!(
                sequence.run_blocking(&mut blocking),
                sequence.run(&mut awaited).await
            );
            assert_eq!(blocking.sent, awaited.sent);
            assert_eq!(blocking.waits, awaited.waits);
            assert_eq!(blocking.outlived, awaited.outlived);
        }
    }

    #[test]
    fn polling_stops_once_gone_or_out_of_time() {
        let mut asked = 0;
        assert!(poll_gone(
            Duration::from_secs(10),
            Duration::from_millis(1),
            || {
                asked += 1;
                asked == 3
            }
        ));
        assert_eq!(asked, 3);

        let started = Instant::now();
        assert!(!poll_gone(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || false
        ));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(!poll_gone(Duration::ZERO, Duration::from_secs(10), || {
            false
        }));
    }
}
