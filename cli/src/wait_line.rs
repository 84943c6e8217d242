//! The approval wait of `breakglass request`: one status line that says who must
//! approve, who did, and counts down the time left.
//!
//! On a terminal the line is redrawn in place (`\r` and clear-line) every second and on
//! each change. Elsewhere (a log, a pipe, CI) a line is written only when something other
//! than the time left changes: no countdown spam, and the daemon's first watch update,
//! which repeats the state the request was created with, adds no line.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use breakglass_proto::v1::{RequestInfo, RequestState};

use crate::approvals::progress_line_at;

/// How often the terminal line counts down.
const TICK: Duration = Duration::from_secs(1);

/// ANSI "erase the whole line", after a carriage return.
const REDRAW: &str = "\r\x1b[2K";

/// What one redraw writes: on a terminal the line replaces the one shown; elsewhere it
/// is a line of its own.
#[must_use]
pub fn frame(info: &RequestInfo, seconds_left: i64, tty: bool) -> String {
    let line = progress_line_at(info, seconds_left);
    if tty {
        format!("{REDRAW}{line}")
    } else {
        format!("{line}\n")
    }
}

/// Everything the line says except the time left: a change of it is news.
fn news(info: &RequestInfo) -> String {
    progress_line_at(info, 0)
}

/// The time left now, counted down from what the daemon sent `received` ago.
fn left_now(info: &RequestInfo, received: Instant, now: Instant) -> i64 {
    let elapsed = i64::try_from(now.saturating_duration_since(received).as_secs()).unwrap_or(0);
    info.seconds_left.saturating_sub(elapsed).max(0)
}

struct Shown {
    out: Box<dyn Write + Send>,
    tty: bool,
    /// The last update, and when it arrived.
    last: Option<(RequestInfo, Instant)>,
    /// The news of the last line written.
    news: String,
    /// A terminal line without its newline is on screen.
    open: bool,
}

impl Shown {
    fn update(&mut self, info: &RequestInfo, now: Instant) {
        let news = news(info);
        let changed = self.last.is_none() || news != self.news;
        self.last = Some((info.clone(), now));
        if changed || self.tty {
            self.news = news;
            self.draw(now);
        }
    }

    fn draw(&mut self, now: Instant) {
        let Some((info, at)) = &self.last else { return };
        let text = frame(info, left_now(info, *at, now), self.tty);
        // The wait goes on without its display: a closed stderr is no reason to fail.
        let _ = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
        self.open = self.tty;
    }

    /// Redraws the countdown on a terminal, while the request waits for approvers.
    fn tick(&mut self, now: Instant) {
        let pending = self.last.as_ref().is_some_and(|(i, _)| {
            RequestState::try_from(i.state).is_ok_and(|s| s == RequestState::Pending)
        });
        if self.tty && pending {
            self.draw(now);
        }
    }

    /// A line of its own (the connection lost, or back): on a terminal it replaces the
    /// status line, which is drawn again below it.
    fn note(&mut self, text: &str, now: Instant) {
        let line = if self.tty {
            format!("{REDRAW}breakglass: {text}\n")
        } else {
            format!("breakglass: {text}\n")
        };
        let _ = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush());
        self.open = false;
        if self.tty {
            self.draw(now);
        }
    }

    fn end(&mut self) {
        if self.open {
            let _ = self.out.write_all(b"\n").and_then(|()| self.out.flush());
            self.open = false;
        }
    }
}

/// The live status line of a waiting request; ends its line when dropped.
pub struct WaitLine {
    shown: Arc<Mutex<Shown>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for WaitLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitLine").finish_non_exhaustive()
    }
}

impl WaitLine {
    /// The line on stderr, redrawn in place (and counting down) when stderr is a terminal.
    #[must_use]
    pub fn stderr() -> Self {
        let tty = std::io::stderr().is_terminal();
        Self::new(Box::new(std::io::stderr()), tty)
    }

    /// The line on `out`; `tty` chooses in-place redraws and the countdown. The countdown
    /// runs on the current tokio runtime, if there is one.
    #[must_use]
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        let shown = Arc::new(Mutex::new(Shown {
            out,
            tty,
            last: None,
            news: String::new(),
            open: false,
        }));
        let ticker = tty
            .then(tokio::runtime::Handle::try_current)
            .and_then(Result::ok)
            .map(|rt| {
                let shown = Arc::clone(&shown);
                rt.spawn(async move {
                    let mut every = tokio::time::interval(TICK);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        every.tick().await;
                        lock(&shown).tick(Instant::now());
                    }
                })
            });
        Self { shown, ticker }
    }

    /// Shows a new state of the request (the `on_update` of
    /// [`crate::approvals::request_live`]).
    pub fn update(&self, info: &RequestInfo) {
        lock(&self.shown).update(info, Instant::now());
    }

    /// Shows what the wait says about its connection (the `on_note` of
    /// [`crate::approvals::request_live_noting`]).
    pub fn note(&self, text: &str) {
        lock(&self.shown).note(text, Instant::now());
    }
}

impl Drop for WaitLine {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        lock(&self.shown).end();
    }
}

fn lock(shown: &Mutex<Shown>) -> std::sync::MutexGuard<'_, Shown> {
    shown.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::v1::Approval;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn pending(seconds_left: i64, approvers: &[&str]) -> RequestInfo {
        RequestInfo {
            request_id: "r-0123456789abcdef".into(),
            state: RequestState::Pending as i32,
            tier: "critical".into(),
            approvals_required: 2,
            approver_groups: vec!["approvers".into()],
            approvals: approvers
                .iter()
                .map(|a| Approval {
                    approver: (*a).into(),
                    ..Approval::default()
                })
                .collect(),
            seconds_left,
            ..RequestInfo::default()
        }
    }

    fn shown(tty: bool) -> (Shown, Sink) {
        let sink = Sink::default();
        let s = Shown {
            out: Box::new(sink.clone()),
            tty,
            last: None,
            news: String::new(),
            open: false,
        };
        (s, sink)
    }

    #[test]
    fn a_frame_counts_down_and_redraws_in_place_on_a_terminal() {
        let info = pending(600, &[]);
        assert_eq!(
            frame(&info, 599, true),
            "\r\x1b[2Kr-0123456789abcdef pending: tier critical needs 2 approval(s) from approvers; approved by nobody yet (0/2); 9m 59s left"
        );
        assert_eq!(
            frame(&info, 61, false),
            "r-0123456789abcdef pending: tier critical needs 2 approval(s) from approvers; approved by nobody yet (0/2); 1m 1s left\n"
        );
        // Never a negative time.
        assert!(frame(&info, -5, false).ends_with("; 0s left\n"));
    }

    #[test]
    fn off_a_terminal_only_news_makes_a_line() {
        let (mut s, sink) = shown(false);
        let t0 = Instant::now();
        s.update(&pending(600, &[]), t0);
        // The watch stream's first update repeats the created state; then refreshes.
        s.update(&pending(600, &[]), t0);
        s.update(&pending(570, &[]), t0 + Duration::from_secs(30));
        s.tick(t0 + Duration::from_secs(31));
        s.update(
            &pending(500, &["approver@example.com"]),
            t0 + Duration::from_secs(100),
        );
        s.end();
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("approved by nobody yet (0/2); 10m left"),
            "{text}"
        );
        assert!(
            lines[1].contains("approved by approver@example.com (1/2); 8m 20s left"),
            "{text}"
        );
        assert!(!text.contains('\r'), "{text:?}");
    }

    #[test]
    fn on_a_terminal_one_line_counts_down_in_place_and_is_ended_once() {
        let (mut s, sink) = shown(true);
        let t0 = Instant::now();
        s.update(&pending(600, &[]), t0);
        s.tick(t0 + Duration::from_secs(1));
        s.tick(t0 + Duration::from_secs(2));
        s.update(
            &pending(597, &["approver@example.com"]),
            t0 + Duration::from_secs(3),
        );
        s.end();
        s.end();
        let text = sink.text();
        // Every frame replaces the last; one newline ends the whole wait.
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.ends_with("(1/2); 9m 57s left\n"), "{text:?}");
        let frames: Vec<&str> = text.trim_end().split(REDRAW).skip(1).collect();
        assert_eq!(frames.len(), 4, "{text:?}");
        assert!(frames[0].ends_with("; 10m left"), "{frames:?}");
        assert!(frames[1].ends_with("; 9m 59s left"), "{frames:?}");
        assert!(frames[2].ends_with("; 9m 58s left"), "{frames:?}");
    }

    #[test]
    fn a_note_is_a_line_of_its_own_and_the_status_line_comes_back_below_it() {
        let (mut s, sink) = shown(true);
        let t0 = Instant::now();
        s.update(&pending(600, &[]), t0);
        s.note("lost the connection", t0 + Duration::from_secs(1));
        s.end();
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(
            lines[0].ends_with("breakglass: lost the connection"),
            "{text:?}"
        );
        assert!(lines[1].ends_with("(0/2); 9m 59s left"), "{text:?}");
        let (mut s, sink) = shown(false);
        s.update(&pending(600, &[]), t0);
        s.note("reconnected", t0);
        s.update(&pending(600, &[]), t0);
        s.end();
        assert_eq!(
            sink.text().lines().collect::<Vec<_>>()[1],
            "breakglass: reconnected"
        );
        assert_eq!(sink.text().lines().count(), 2, "{:?}", sink.text());
    }

    #[test]
    fn the_countdown_stops_once_the_request_is_approved() {
        let (mut s, sink) = shown(true);
        let t0 = Instant::now();
        let mut approved = pending(0, &["a", "b"]);
        approved.state = RequestState::Approved as i32;
        s.update(&approved, t0);
        s.tick(t0 + Duration::from_secs(1));
        assert_eq!(sink.text().matches(REDRAW).count(), 1, "{:?}", sink.text());
    }
}
