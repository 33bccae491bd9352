//! moirai-bench, suite "async": the Tokio peer, impl "tokio".
//!
//! Exports with C linkage the entry points of bench/async/peer.h that Tokio
//! competes in: fiber_spawn_join (from inside a task on a multi-thread
//! runtime of `threads` workers, spawn an empty task with `tokio::spawn`
//! and await its `JoinHandle`, `iters` times) and tcp_echo_rtt (a server
//! task and a client task of the same runtime on a loopback connection).
//!
//! The runtime is built before the clock starts and dropped after it
//! stops; dropping a multi-thread runtime waits until its worker threads
//! have exited, so no Tokio thread is left spinning into the next
//! implementation's round.

use std::os::raw::c_int;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// `k` sequential round trips of `msg` on `c`, every echo checked.
async fn echo_trips(c: &mut TcpStream, msg: &[u8], k: u64) -> bool {
    let mut got = vec![0u8; msg.len()];
    for _ in 0..k {
        if c.write_all(msg).await.is_err() {
            return false;
        }
        if c.read_exact(&mut got).await.is_err() || got != msg {
            return false;
        }
    }
    true
}

/// tcp_echo_rtt: a runtime of `threads` workers runs an echo server task
/// and one client task (TCP_NODELAY on both ends) on a loopback
/// connection; the client makes 100 untimed round trips of 64 B, then
/// `iters` timed ones. Returns us per round trip.
#[no_mangle]
pub extern "C" fn moirai_peer_echo_rtt(threads: c_int, iters: u64) -> f64 {
    if threads < 1 {
        return -1.0;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return -1.0,
    };
    let result = rt.block_on(async move {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(_) => return -1.0,
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(_) => return -1.0,
        };
        let server = tokio::spawn(async move {
            let (mut s, _) = match listener.accept().await {
                Ok(x) => x,
                Err(_) => return,
            };
            if s.set_nodelay(true).is_err() {
                return;
            }
            let mut buf = vec![0u8; 65536];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        // The client is a task of its own, on a worker, as the server is.
        let client = tokio::spawn(async move {
            let mut c = match TcpStream::connect(addr).await {
                Ok(c) => c,
                Err(_) => return -1.0,
            };
            if c.set_nodelay(true).is_err() {
                return -1.0;
            }
            let msg: Vec<u8> = (0..64).map(|b| b'a' + (b % 26) as u8).collect();
            if !echo_trips(&mut c, &msg, 100).await {
                return -1.0;
            }
            let t0 = Instant::now();
            if !echo_trips(&mut c, &msg, iters.max(1)).await {
                return -1.0;
            }
            t0.elapsed().as_nanos() as f64 / iters.max(1) as f64 / 1000.0
        });
        let r = client.await.unwrap_or(-1.0);
        let _ = server.await;
        r
    });
    drop(rt);
    result
}
