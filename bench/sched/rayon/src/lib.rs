//! moirai-bench, suite "sched": the Rayon peer, impl "rayon".
//!
//! Exports with C linkage the entry point of bench/sched/peer.h that Rayon
//! competes in: fib(n) through `rayon::join`, with no cutoff, in a
//! `ThreadPool` of `threads` threads entered with `install` from the bench
//! thread (which then only waits, as it does for Moirai's `moirai_join`).
//!
//! The pool is built before the clock starts and dropped after it stops;
//! dropping a Rayon pool only asks its threads to exit, so an exit handler
//! counts them out and the call waits until all have gone. No Rayon thread
//! is left spinning into the next implementation's round.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    let (a, b) = rayon::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

/// Counts the pool's threads out as they exit.
struct Exits {
    count: Mutex<usize>,
    cond: Condvar,
}

/// Runs `work` inside a pool of `threads` threads twice, timing only the
/// second run (the first settles the new threads on the CPUs, as every
/// implementation of the case does); returns its result and the seconds,
/// or None if the pool cannot be built.
fn in_pool<R: Send>(threads: usize, work: impl Fn() -> R + Send + Sync) -> Option<(R, f64)> {
    let exits = Arc::new(Exits {
        count: Mutex::new(0),
        cond: Condvar::new(),
    });
    let on_exit = Arc::clone(&exits);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .exit_handler(move |_| {
            let mut n = on_exit.count.lock().unwrap();
            *n += 1;
            on_exit.cond.notify_all();
        })
        .build()
        .ok()?;
    pool.install(&work);
    let t0 = Instant::now();
    let r = pool.install(&work);
    let t = t0.elapsed().as_secs_f64();
    drop(pool);
    let mut n = exits.count.lock().unwrap();
    while *n < threads {
        n = exits.cond.wait(n).unwrap();
    }
    Some((r, t))
}

/// fib(n) with every call a `rayon::join`; `*result` gets the value.
/// Returns seconds, or -1.0 if the pool cannot be built.
///
/// # Safety
/// `result` must point to writable memory for a u64.
#[no_mangle]
pub unsafe extern "C" fn moirai_peer_fib(threads: i32, n: i32, result: *mut u64) -> f64 {
    if threads < 1 || n < 0 || result.is_null() {
        return -1.0;
    }
    match in_pool(threads as usize, move || fib(n as u32)) {
        Some((r, t)) => {
            *result = r;
            t
        }
        None => -1.0,
    }
}
