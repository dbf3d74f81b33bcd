//! Admission control for generation: how many answers a model runs at once, how many
//! may wait, and how long one may take.
//!
//! Why: a generation holds a CPU core and a KV cache for seconds to minutes. Run on the
//! blocking pool without a limit, a burst of long answers took every core (queries
//! slowed behind them), grew memory without bound, and kept going after their clients
//! left. The [`Gate`] of a model lets `max_concurrent` generations run and
//! `max_queue` more wait (asynchronously, on no thread); beyond that a request is
//! refused at once with [`Busy`] (HTTP 429 and `Retry-After`), so the server stays
//! responsive and the client learns when to come back. Each admitted request carries an
//! [`Interrupt`] with its deadline, which the generation loop checks every token, and
//! which the server cancels when the client goes away ([`CancelOnDrop`]). Transport-free:
//! the server maps [`Busy`] to a response; the counters feed `/metrics`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engram_generator::{FinishReason, Interrupt};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `[generation]` in the server's configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationLimits {
    /// Generations one model runs at once (each keeps about one core busy).
    pub max_concurrent: usize,
    /// Requests that may wait for a free slot; more are refused with 429 and Retry-After.
    pub max_queue: usize,
    /// Seconds a request may take from the moment it asks for a slot (waiting included)
    /// to its last token; generation stops there.
    pub deadline_s: f64,
    /// Most tokens one request may ask for (`max_tokens`).
    pub max_tokens: usize,
}

impl Default for GenerationLimits {
    /// Sized for a 2-core machine: two generations use both cores; a 2,048-token answer
    /// at ~30 tokens/s takes about 70 s, inside the 120 s deadline.
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_queue: 16,
            deadline_s: 120.0,
            max_tokens: 2048,
        }
    }
}

impl GenerationLimits {
    /// Checks the ranges a configuration file could get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_concurrent == 0 {
            return Err("[generation] max_concurrent must be at least 1".into());
        }
        if !(self.deadline_s.is_finite() && self.deadline_s > 0.0) {
            return Err(format!(
                "[generation] deadline_s must be a positive number of seconds, got {}",
                self.deadline_s
            ));
        }
        if self.max_tokens == 0 {
            return Err("[generation] max_tokens must be at least 1".into());
        }
        Ok(())
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.deadline_s)
    }
}

/// A request refused because the model is saturated.
#[derive(Debug, Clone, PartialEq)]
pub struct Busy {
    /// Generations running when it was refused.
    pub running: usize,
    /// Requests waiting when it was refused (not counting itself).
    pub waiting: usize,
    /// When to try again, estimated from recent generations' durations.
    pub retry_after_s: u64,
    /// It waited in the queue until its deadline instead of finding the queue full.
    pub timed_out: bool,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (running, waiting, retry) = (self.running, self.waiting, self.retry_after_s);
        if self.timed_out {
            write!(f, "the model is busy: the request waited until its deadline for one of {running} running generations to finish ({waiting} others waiting); retry after {retry} s or raise [generation] max_concurrent or deadline_s")
        } else {
            write!(f, "the model is busy: {running} generations running and {waiting} waiting; retry after {retry} s or raise [generation] max_queue")
        }
    }
}

/// What the gate has seen, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GateStats {
    /// Generations running now.
    pub running: usize,
    /// Requests waiting for a slot now.
    pub waiting: usize,
    /// Requests given a slot since start.
    pub admitted: u64,
    /// Requests refused (queue full, or no slot before the deadline).
    pub rejected: u64,
    /// Generations that ended by themselves (end of turn or `max_tokens`).
    pub completed: u64,
    /// Generations stopped because their client went away.
    pub cancelled: u64,
    /// Generations stopped at their deadline.
    pub deadline: u64,
    /// Generations that failed with an error.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    admitted: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    deadline: AtomicU64,
    failed: AtomicU64,
}

/// The admission gate of one model.
pub struct Gate {
    limits: GenerationLimits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    counters: Counters,
    /// Moving average of how long a slot is held, seconds (None before the first).
    mean_hold_s: Mutex<Option<f64>>,
}

impl Gate {
    pub fn new(limits: GenerationLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
            waiting: AtomicUsize::new(0),
            counters: Counters::default(),
            mean_hold_s: Mutex::new(None),
        }
    }

    pub fn limits(&self) -> &GenerationLimits {
        &self.limits
    }

    /// Waits (asynchronously, in arrival order) for a slot. Refused at once when
    /// `max_queue` requests wait already, or after waiting until the deadline. Dropping
    /// the future (the client went away) leaves the queue.
    pub async fn admit(self: &Arc<Self>) -> Result<Admission, Busy> {
        let deadline = Instant::now() + self.limits.deadline();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
                let _in_line = InLine(self);
                if ahead >= self.limits.max_queue {
                    return Err(self.refuse(ahead, false));
                }
                let wait = self.slots.clone().acquire_owned();
                match tokio::time::timeout_at(deadline.into(), wait).await {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; a closed one would refuse too.
                    _ => {
                        let others = self.waiting.load(Ordering::SeqCst).saturating_sub(1);
                        return Err(self.refuse(others, true));
                    }
                }
            }
        };
        self.counters.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(Admission {
            gate: self.clone(),
            _slot: permit,
            interrupt: Arc::new(Interrupt::new(Some(deadline))),
            started: Instant::now(),
            outcome: None,
        })
    }

    fn refuse(&self, waiting: usize, timed_out: bool) -> Busy {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let running = self.running();
        let hold = self.mean_hold_s.lock().expect("lock").unwrap_or(1.0);
        // The queue ahead drains `max_concurrent` at a time.
        let estimate = hold * (waiting + 1) as f64 / self.limits.max_concurrent as f64;
        Busy {
            running,
            waiting,
            retry_after_s: (estimate.ceil() as u64).clamp(1, self.limits.deadline_s.ceil() as u64),
            timed_out,
        }
    }

    fn running(&self) -> usize {
        self.limits.max_concurrent - self.slots.available_permits()
    }

    pub fn stats(&self) -> GateStats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        GateStats {
            running: self.running(),
            waiting: self.waiting.load(Ordering::SeqCst),
            admitted: load(&c.admitted),
            rejected: load(&c.rejected),
            completed: load(&c.completed),
            cancelled: load(&c.cancelled),
            deadline: load(&c.deadline),
            failed: load(&c.failed),
        }
    }
}

/// A place in the queue, given back however the wait ends.
struct InLine<'a>(&'a Gate);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A slot of the gate, held while one generation runs; dropping it frees the slot.
pub struct Admission {
    gate: Arc<Gate>,
    _slot: OwnedSemaphorePermit,
    interrupt: Arc<Interrupt>,
    started: Instant,
    outcome: Option<FinishReason>,
}

impl Admission {
    /// What the generation must check: the deadline, and cancellation.
    pub fn interrupt(&self) -> &Interrupt {
        &self.interrupt
    }

    /// The request's deadline in seconds (for messages).
    pub fn deadline_s(&self) -> f64 {
        self.gate.limits.deadline_s
    }

    /// A guard for the request's async side: when it is dropped (the server drops a
    /// request's future when its client disconnects) the generation is cancelled.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.interrupt.clone())
    }

    /// Records how the generation ended (None: it failed).
    pub fn record(&mut self, outcome: Option<FinishReason>) {
        self.outcome = outcome;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let c = &self.gate.counters;
        let counter = match self.outcome {
            Some(FinishReason::Stop | FinishReason::Length) => &c.completed,
            Some(FinishReason::Cancelled) => &c.cancelled,
            Some(FinishReason::Deadline) => &c.deadline,
            None => &c.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let held = self.started.elapsed().as_secs_f64();
        let mut mean = self.gate.mean_hold_s.lock().expect("lock");
        *mean = Some(mean.map_or(held, |m| 0.8 * m + 0.2 * held));
    }
}

/// Cancels a generation when dropped (see [`Admission::cancel_on_drop`]).
pub struct CancelOnDrop(Arc<Interrupt>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_concurrent: usize, max_queue: usize, deadline_s: f64) -> Arc<Gate> {
        Arc::new(Gate::new(GenerationLimits {
            max_concurrent,
            max_queue,
            deadline_s,
            ..Default::default()
        }))
    }

    async fn admit_now(gate: &Arc<Gate>) -> Option<Result<Admission, Busy>> {
        tokio::time::timeout(Duration::from_millis(50), gate.admit())
            .await
            .ok()
    }

    #[tokio::test]
    async fn admits_up_to_capacity_queues_then_refuses() {
        let g = gate(2, 1, 60.0);
        let a = admit_now(&g).await.unwrap().unwrap();
        let b = admit_now(&g).await.unwrap().unwrap();
        assert_eq!((g.stats().running, g.stats().waiting), (2, 0));

        // The third waits; while it waits a fourth finds the queue full.
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.admit().await.map(|_| ()) }
        });
        while g.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        let busy = admit_now(&g).await.unwrap().err().unwrap();
        assert_eq!((busy.running, busy.waiting, busy.timed_out), (2, 1, false));
        assert!(busy.retry_after_s >= 1);
        let message = busy.to_string();
        assert!(
            message.contains("2 generations running and 1 waiting")
                && message.contains("max_queue"),
            "{message}"
        );

        // A slot freed goes to the waiter.
        drop(a);
        waiter.await.unwrap().unwrap();
        drop(b);
        let s = g.stats();
        assert_eq!((s.running, s.waiting, s.admitted, s.rejected), (0, 0, 3, 1));
        assert_eq!(s.failed, 3, "no outcome recorded counts as failed");
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_leaves_the_queue() {
        let g = gate(1, 1, 60.0);
        let held = admit_now(&g).await.unwrap().unwrap();
        assert!(admit_now(&g).await.is_none(), "waits, then is dropped");
        assert_eq!(g.stats().waiting, 0);
        // The queue has room again.
        let waiter = tokio::spawn({
            let g = g.clone();
            async move { g.admit().await.map(|_| ()) }
        });
        while g.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        waiter.await.unwrap().unwrap();
        assert_eq!(g.stats().rejected, 0);
    }

    #[tokio::test]
    async fn waiting_past_the_deadline_is_refused() {
        let g = gate(1, 4, 0.05);
        let _held = admit_now(&g).await.unwrap().unwrap();
        let busy = g.admit().await.err().unwrap();
        assert!(busy.timed_out);
        assert!(busy.to_string().contains("deadline"), "{busy}");
        assert_eq!(g.stats().waiting, 0);
    }

    #[tokio::test]
    async fn outcomes_are_counted_and_cancel_on_drop_cancels() {
        let g = gate(1, 0, 60.0);
        let mut a = admit_now(&g).await.unwrap().unwrap();
        assert_eq!(a.interrupt().check(), None);
        drop(a.cancel_on_drop()); // the request's future dropped: client gone
        assert_eq!(a.interrupt().check(), Some(FinishReason::Cancelled));
        a.record(Some(FinishReason::Cancelled));
        drop(a);
        let mut b = admit_now(&g).await.unwrap().unwrap();
        b.record(Some(FinishReason::Deadline));
        drop(b);
        let mut c = admit_now(&g).await.unwrap().unwrap();
        c.record(Some(FinishReason::Stop));
        drop(c);
        let s = g.stats();
        assert_eq!(
            (s.cancelled, s.deadline, s.completed, s.running),
            (1, 1, 1, 0)
        );

        // The deadline is in the interrupt.
        let short = gate(1, 0, 0.01);
        let d = admit_now(&short).await.unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(d.interrupt().check(), Some(FinishReason::Deadline));
    }

    #[test]
    fn limits_are_checked() {
        assert!(GenerationLimits::default().validate().is_ok());
        let zero = GenerationLimits {
            max_concurrent: 0,
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().contains("max_concurrent"));
        let forever = GenerationLimits {
            deadline_s: 0.0,
            ..Default::default()
        };
        assert!(forever.validate().unwrap_err().contains("deadline_s"));
    }
}
