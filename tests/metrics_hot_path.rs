//! Recording a check's metrics allocates nothing once its series exist: the hot path builds
//! label sets from `&'static str`s and `Arc<str>` clones only (issue 5: bounded, cheap labels).
//!
//! A counting global allocator observes every allocation of this test binary, so this file
//! holds this one test only. It counts only the measuring thread's allocations: the test
//! harness's own thread allocates now and then while a test runs (seen: 4 allocations in about
//! one run in twenty), which is not the hot path's doing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiongate::metrics::Metrics;
use sessiongate_core::deny::DenyReason;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread whose allocations are counted (const-initialised: reading it never
    /// allocates).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn recording_a_decision_allocates_nothing_once_its_series_exist() {
    COUNTED.with(|counted| counted.set(true));
    let metrics = Metrics::new();
    let route: Arc<str> = Arc::from("orders-read");
    let record = |round: u32| {
        metrics.checks.allow(
            Some(&route),
            false,
            Duration::from_micros(80),
            Some(Duration::from_secs(u64::from(round % 900))),
        );
        metrics.checks.deny(
            Some(&route),
            DenyReason::ALL[round as usize % DenyReason::ALL.len()],
            false,
            Duration::from_micros(120),
        );
        metrics
            .checks
            .deny(None, DenyReason::NoRoute, false, Duration::from_micros(40));
    };
    for round in 0..100 {
        record(round); // creates every series this test uses
    }
    let rounds = 100_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for round in 0..rounds {
        record(round);
    }
    let elapsed = started.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    eprintln!(
        "figure: one decision's metrics recorded in {:?} (mean of {} records, this build's profile)",
        elapsed / (rounds * 3),
        rounds * 3
    );
    assert_eq!(allocations, 0, "recording allocated");
}
