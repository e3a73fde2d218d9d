//! The stall timer: how long a response may send nothing before its span is ended as failed.
//! One type for the gateway's response bodies and the library's stream wrapper, so a stall reads
//! the same wherever it happens: `error.type` [`STALLED`] and the message of [`Stalled`].

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The `error.type` of a call whose response stalled.
pub const STALLED: &str = "timeout";

/// A response that sent nothing for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no data for {} ms", .0.as_millis())]
pub struct Stalled(pub Duration);

/// Times the silence of a response between two pieces of data.
#[derive(Debug)]
pub struct StallTimer {
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallTimer {
    /// A timer that runs out after `after` without data.
    pub fn new(after: Duration) -> StallTimer {
        StallTimer { after, timer: None }
    }

    /// Data arrived: the silence is timed afresh from the next time the response is pending.
    pub fn reset(&mut self) {
        self.timer = None;
    }

    /// The response is pending: starts timing the silence (when a Tokio runtime is present) and
    /// reports [`Stalled`] once it lasted `after`; the timer then starts afresh.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<Stalled> {
        if self.timer.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            self.timer = Some(Box::pin(tokio::time::sleep(self.after)));
        }
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        if timer.as_mut().poll(cx).is_ready() {
            self.timer = None;
            return Poll::Ready(Stalled(self.after));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_silence_in_milliseconds() {
        assert_eq!(
            Stalled(Duration::from_millis(400)).to_string(),
            "no data for 400 ms"
        );
    }

    #[tokio::test]
    async fn it_reports_the_silence_it_timed_and_starts_afresh() {
        let mut timer = StallTimer::new(Duration::from_millis(10));
        let stalled = std::future::poll_fn(|cx| timer.poll_stalled(cx)).await;
        assert_eq!(stalled, Stalled(Duration::from_millis(10)));
        assert!(
            timer.timer.is_none(),
            "a stall that was reported is not reported again"
        );
        timer.reset();
        let again = std::future::poll_fn(|cx| timer.poll_stalled(cx)).await;
        assert_eq!(again.to_string(), "no data for 10 ms");
    }

    #[test]
    fn without_a_runtime_it_never_runs_out() {
        let mut timer = StallTimer::new(Duration::ZERO);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(timer.poll_stalled(&mut cx), Poll::Pending);
        assert!(timer.timer.is_none());
    }
}
