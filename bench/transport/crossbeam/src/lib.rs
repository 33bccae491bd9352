//! moirai-bench, suite "transport": the crossbeam-channel peer, impl
//! "crossbeam".
//!
//! Exports with C linkage the entry points of bench/transport/peer.h that
//! crossbeam-channel competes in: chan_bounded_1p1c and chan_pingpong,
//! between two OS threads. The second thread is spawned and has reached a
//! barrier before the clock starts, and is joined after it stops. Each
//! function checks the values it received (order and count) and returns
//! -1 if anything was lost, duplicated or reordered.

use crossbeam_channel::bounded;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

fn per_op(ns: u128, ops: u64) -> f64 {
    ns as f64 / (if ops == 0 { 1 } else { ops }) as f64
}

/// One producer (the calling thread) sends `n` 8-byte values 0..n through
/// a bounded channel of `capacity`; one consumer thread receives them and
/// checks that they arrive in order. Returns ns per message.
#[no_mangle]
pub extern "C" fn moirai_peer_chan_bounded_1p1c(n: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        return -1.0;
    }
    let (tx, rx) = bounded::<u64>(capacity as usize);
    let start = Arc::new(Barrier::new(2));
    let gate = start.clone();
    let consumer = thread::spawn(move || {
        gate.wait();
        let mut expect = 0u64;
        for _ in 0..n {
            match rx.recv() {
                Ok(v) if v == expect => expect += 1,
                _ => return false,
            }
        }
        true
    });
    start.wait();
    let t0 = Instant::now();
    for i in 0..n {
        if tx.send(i).is_err() {
            break;
        }
    }
    let ok = consumer.join().unwrap_or(false);
    let ns = t0.elapsed().as_nanos();
    if ok {
        per_op(ns, n)
    } else {
        -1.0
    }
}

/// Two threads and two rendezvous channels (capacity 0): the calling
/// thread sends i on one and waits for i + 1 on the other, `n` times; the
/// echo thread answers each value plus one. Returns ns per round trip.
#[no_mangle]
pub extern "C" fn moirai_peer_chan_pingpong(n: u64) -> f64 {
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let start = Arc::new(Barrier::new(2));
    let gate = start.clone();
    let echo = thread::spawn(move || {
        gate.wait();
        for _ in 0..n {
            match ping_rx.recv() {
                Ok(v) => {
                    if pong_tx.send(v + 1).is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    });
    start.wait();
    let t0 = Instant::now();
    let mut ok = true;
    for i in 0..n {
        if ping_tx.send(i).is_err() {
            ok = false;
            break;
        }
        match pong_rx.recv() {
            Ok(v) if v == i + 1 => {}
            _ => {
                ok = false;
                break;
            }
        }
    }
    let ns = t0.elapsed().as_nanos();
    drop(ping_tx);
    let echo_ok = echo.join().unwrap_or(false);
    if ok && echo_ok {
        per_op(ns, n)
    } else {
        -1.0
    }
}
