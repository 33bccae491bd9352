//! moirai-bench, suite "async": the Tokio peer, impl "tokio".
//!
//! Exports with C linkage the entry point of bench/async/peer.h that Tokio
//! competes in, fiber_spawn_join: from inside a task on a multi-thread
//! runtime of `threads` workers, spawn an empty task with `tokio::spawn`
//! and await its `JoinHandle`, `iters` times.
//!
//! The runtime is built before the clock starts and dropped after it
//! stops; dropping a multi-thread runtime waits until its worker threads
//! have exited, so no Tokio thread is left spinning into the next
//! implementation's round.

use std::os::raw::c_int;
use std::time::Instant;

/// Spawns an empty task and waits for it; false if it did not complete.
async fn spawn_join() -> bool {
    tokio::spawn(async {}).await.is_ok()
}

#[no_mangle]
pub extern "C" fn moirai_peer_spawn_join(threads: c_int, iters: u64) -> f64 {
    if threads < 1 {
        return -1.0;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return -1.0,
    };
    // The loop runs in a task of its own, on a worker, not in block_on's
    // future on the calling thread: a fiber spawning fibers.
    let result = rt.block_on(async move {
        let driver = tokio::spawn(async move {
            // A few untimed rounds so both workers have started.
            for _ in 0..1000 {
                if !spawn_join().await {
                    return -1.0;
                }
            }
            let t0 = Instant::now();
            for _ in 0..iters {
                if !spawn_join().await {
                    return -1.0;
                }
            }
            t0.elapsed().as_nanos() as f64 / iters.max(1) as f64
        });
        driver.await.unwrap_or(-1.0)
    });
    drop(rt);
    result
}
