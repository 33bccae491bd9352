// moirai-bench, suite "async": the Go peer, impl "go" (see
// bench/async/peer.h for the contract of each entry point).
//
// Built with `go build -buildmode=c-shared` (build.sh) into a shared
// module that moirai-bench dlopen()s. The Go runtime starts when the
// module is loaded and lives as long as the process: it cannot be shut
// down. Between calls it is idle and its threads sleep in the kernel
// (sysmon too, once every P is idle), so it does not spin into another
// implementation's round. Each call sets GOMAXPROCS to the `threads` it is
// given and restores the previous value when done.
//
// A call from C runs on the calling thread, which holds one of the
// GOMAXPROCS Ps while it runs Go code and hands it on when it blocks
// (WaitGroup.Wait, a channel receive): so the goroutines run on exactly
// `threads` Ps, the calling thread being one of them, as the bench thread
// is one of Boost.Fiber's two threads.
package main

// #include <stdint.h>
import "C"

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// withProcs runs f with GOMAXPROCS set to threads, then restores it.
func withProcs(threads C.int, f func() float64) C.double {
	if threads < 1 {
		return -1
	}
	prev := runtime.GOMAXPROCS(int(threads))
	defer runtime.GOMAXPROCS(prev)
	return C.double(f())
}

func perOp(d time.Duration, ops uint64) float64 {
	if ops == 0 {
		ops = 1
	}
	return float64(d.Nanoseconds()) / float64(ops)
}

//export moirai_peer_spawn_join
func moirai_peer_spawn_join(threads C.int, iters C.uint64_t) C.double {
	n := uint64(iters)
	return withProcs(threads, func() float64 {
		// The loop runs in a goroutine of its own ("from inside a
		// fiber"); the calling thread waits for its result.
		result := make(chan float64)
		go func() {
			spawnJoin := func() {
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { wg.Done() }()
				wg.Wait()
			}
			// A few untimed rounds so the other P has started.
			for i := 0; i < 1000; i++ {
				spawnJoin()
			}
			t0 := time.Now()
			for i := uint64(0); i < n; i++ {
				spawnJoin()
			}
			result <- perOp(time.Since(t0), n)
		}()
		return <-result
	})
}

//export moirai_peer_yield
func moirai_peer_yield(threads C.int, fibers C.int, yields C.uint64_t) C.double {
	nf, y := int(fibers), uint64(yields)
	return withProcs(threads, func() float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(nf)
		for f := 0; f < nf; f++ {
			go func() {
				for i := uint64(0); i < y; i++ {
					runtime.Gosched()
				}
				wg.Done()
			}()
		}
		wg.Wait()
		return perOp(time.Since(t0), uint64(nf)*y)
	})
}

//export moirai_peer_mutex_handoff
func moirai_peer_mutex_handoff(threads C.int, fibers C.int, perFiber C.uint64_t, counter *C.uint64_t) C.double {
	nf, k := int(fibers), uint64(perFiber)
	var count uint64
	t := withProcs(threads, func() float64 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		// The start gate: the goroutines are spawned before the clock
		// starts and wait here until all have arrived, so that the
		// clock measures the acquisitions only.
		start := make(chan struct{})
		var arrived int32
		wg.Add(nf)
		for f := 0; f < nf; f++ {
			go func() {
				atomic.AddInt32(&arrived, 1)
				<-start
				for i := uint64(0); i < k; i++ {
					mu.Lock()
					count++
					// Yield while holding the lock so that the
					// others really contend for it (see
					// bench_async.c).
					runtime.Gosched()
					mu.Unlock()
				}
				wg.Done()
			}()
		}
		for atomic.LoadInt32(&arrived) < int32(nf) {
			time.Sleep(100 * time.Microsecond)
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		return perOp(time.Since(t0), uint64(nf)*k)
	})
	*counter = C.uint64_t(count)
	return t
}

func cpuNs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

//export moirai_peer_sleep
func moirai_peer_sleep(threads C.int, fibers C.int, sleepNs C.uint64_t) C.double {
	nf, d := int(fibers), time.Duration(sleepNs)
	return withProcs(threads, func() float64 {
		var wg sync.WaitGroup
		c0 := cpuNs()
		wg.Add(nf)
		for f := 0; f < nf; f++ {
			go func() {
				time.Sleep(d)
				wg.Done()
			}()
		}
		wg.Wait()
		c1 := cpuNs()
		if c0 < 0 || c1 < 0 || nf < 1 {
			return -1
		}
		return float64(c1-c0) / float64(nf)
	})
}

// rssBytes reads the resident set size from /proc/self/statm (its second
// field, in pages).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

//export moirai_peer_parked_rss
func moirai_peer_parked_rss(threads C.int, fibers C.int) C.double {
	nf := int(fibers)
	return withProcs(threads, func() float64 {
		if nf < 1 {
			return -1
		}
		// Dead goroutines and their stacks from earlier rounds stay in
		// Go's free lists and heap; a collection that returns freed
		// memory to the OS makes this round's goroutines pay for their
		// own stacks instead of reusing pages already resident.
		runtime.GC()
		debug.FreeOSMemory()
		before := rssBytes()
		release := make(chan struct{})
		var started int32
		var wg sync.WaitGroup
		wg.Add(nf)
		for f := 0; f < nf; f++ {
			go func() {
				atomic.AddInt32(&started, 1)
				<-release
				wg.Done()
			}()
		}
		// Every goroutine has announced itself and is at most a few
		// instructions from blocking on the receive; a short sleep lets
		// the last ones get there.
		for atomic.LoadInt32(&started) < int32(nf) {
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(20 * time.Millisecond)
		after := rssBytes()
		close(release)
		wg.Wait()
		if before < 0 || after < 0 {
			return -1
		}
		return float64(after-before) / float64(nf)
	})
}

// echoServe echoes everything read on c until the client closes it.
func echoServe(c net.Conn) {
	io.Copy(c, c)
	c.Close()
}

// echoPairs listens on an ephemeral loopback port, connects n clients to
// it and starts an echo goroutine on the server side of each; it returns
// the clients, and a function that closes the listener and every
// connection. TCP_NODELAY is Go's default for TCP connections.
func echoPairs(n int) ([]net.Conn, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	accepted := make(chan net.Conn, n)
	go func() {
		for i := 0; i < n; i++ {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
			go echoServe(c)
		}
	}()
	clients := make([]net.Conn, 0, n)
	closeAll := func() {
		l.Close()
		for _, c := range clients {
			c.Close()
		}
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, c)
	}
	for i := 0; i < n; i++ {
		if _, ok := <-accepted; !ok {
			closeAll()
			return nil, nil, io.ErrUnexpectedEOF
		}
	}
	return clients, closeAll, nil
}

// echoTrips makes k sequential 64 B round trips on c, checking every echo.
func echoTrips(c net.Conn, msg []byte, k uint64) bool {
	got := make([]byte, len(msg))
	for i := uint64(0); i < k; i++ {
		if _, err := c.Write(msg); err != nil {
			return false
		}
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			return false
		}
	}
	return true
}

// echoRun: conns client goroutines, each with its own connection to a
// server goroutine of this process, each making `warm` untimed round trips
// and then, once all have, `per` timed ones. Returns ns per request.
func echoRun(conns int, warm, per uint64) float64 {
	clients, closeAll, err := echoPairs(conns)
	if err != nil {
		return -1
	}
	defer closeAll()
	var warmed, done sync.WaitGroup
	start := make(chan struct{})
	var failed int32
	warmed.Add(conns)
	done.Add(conns)
	for i, c := range clients {
		msg := make([]byte, 64)
		for b := range msg {
			msg[b] = byte('a' + (i+b)%26)
		}
		go func(c net.Conn, msg []byte) {
			defer done.Done()
			ok := echoTrips(c, msg, warm)
			warmed.Done()
			<-start
			if !ok || !echoTrips(c, msg, per) {
				atomic.StoreInt32(&failed, 1)
			}
		}(c, msg)
	}
	warmed.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	d := time.Since(t0)
	if atomic.LoadInt32(&failed) != 0 {
		return -1
	}
	return perOp(d, uint64(conns)*per)
}

//export moirai_peer_echo_rtt
func moirai_peer_echo_rtt(threads C.int, iters C.uint64_t) C.double {
	return withProcs(threads, func() float64 {
		ns := echoRun(1, 100, uint64(iters))
		if ns < 0 {
			return ns
		}
		return ns / 1000
	})
}

//export moirai_peer_echo_conns
func moirai_peer_echo_conns(threads C.int, conns C.int, perConn C.uint64_t) C.double {
	return withProcs(threads, func() float64 {
		return echoRun(int(conns), 10, uint64(perConn))
	})
}

// The net/http server of http_hello_keepalive, between start and stop.
var (
	httpServer *http.Server
	httpDone   chan struct{}
	httpProcs  int
)

var helloBody = []byte("Hello, World!")

//export moirai_peer_http_start
func moirai_peer_http_start(threads C.int, port *C.int) C.int {
	if threads < 1 || httpServer != nil {
		return -22 // -EINVAL
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return -98 // -EADDRINUSE, the likely cause
	}
	httpProcs = runtime.GOMAXPROCS(int(threads))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(helloBody)
	})
	httpServer = &http.Server{Handler: mux}
	httpDone = make(chan struct{})
	go func() {
		httpServer.Serve(l)
		close(httpDone)
	}()
	*port = C.int(l.Addr().(*net.TCPAddr).Port)
	return 0
}

//export moirai_peer_http_stop
func moirai_peer_http_stop() C.int {
	if httpServer == nil {
		return -22
	}
	httpServer.Close()
	<-httpDone
	httpServer = nil
	runtime.GOMAXPROCS(httpProcs)
	return 0
}

// A c-shared build needs a main package with a main function, never run.
func main() {}
