// moirai-bench, suite "transport": the Go peer, impl "go" (see
// bench/transport/bench_transport.c for the cases).
//
// A program, not a c-shared library: the async suite already loads a Go
// c-shared module into moirai-bench, and two Go runtimes in one process
// are not supported. moirai-bench runs this program once per round, as
//
//	peer CASE N
//
// and reads one line from its standard output: the case's metric (ns per
// message or per round trip), or a negative number if the work came back
// wrong. The goroutines are started and have reached a start gate before
// the clock starts, so that process and runtime start-up are not
// measured. GOMAXPROCS is 2: the goroutines run on two threads, as the
// Moirai side runs on two threads or two workers.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

const (
	procs    = 2
	capacity = 1024 // the buffered channels' capacity, as Moirai's
	fibers   = 4    // producers, and consumers, of chan_fibers_4p4c
)

func perOp(d time.Duration, ops uint64) float64 {
	if ops == 0 {
		ops = 1
	}
	return float64(d.Nanoseconds()) / float64(ops)
}

// boundedOneToOne: one goroutine sends 0..n-1 through a buffered channel,
// another receives them and checks their order. ns per message.
func boundedOneToOne(n uint64) float64 {
	ch := make(chan uint64, capacity)
	start := make(chan struct{})
	done := make(chan bool)
	go func() {
		<-start
		for i := uint64(0); i < n; i++ {
			if <-ch != i {
				done <- false
				return
			}
		}
		done <- true
	}()
	runtime.Gosched()
	t0 := time.Now()
	close(start)
	for i := uint64(0); i < n; i++ {
		ch <- i
	}
	ok := <-done
	d := time.Since(t0)
	if !ok {
		return -1
	}
	return perOp(d, n)
}

// pingPong: two goroutines and two unbuffered channels; one sends i and
// waits for i+1, the other answers. ns per round trip.
func pingPong(n uint64) float64 {
	ping := make(chan uint64)
	pong := make(chan uint64)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	// One untimed round trip: the echo goroutine is running.
	ping <- 0
	if <-pong != 1 {
		return -1
	}
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		ping <- i
		if <-pong != i+1 {
			return -1
		}
	}
	d := time.Since(t0)
	close(ping)
	return perOp(d, n)
}

// fibersFourToFour: 4 producer and 4 consumer goroutines over one buffered
// channel; producer p sends n/4 values p, p+4, p+8, ...; the consumers
// count and sum what they receive. ns per message.
func fibersFourToFour(n uint64) float64 {
	per := n / fibers
	if per == 0 {
		per = 1
	}
	total := per * fibers
	ch := make(chan uint64, capacity)
	start := make(chan struct{})
	var ready, prod, cons sync.WaitGroup
	var mu sync.Mutex
	var count, sum uint64
	ready.Add(2 * fibers)
	prod.Add(fibers)
	cons.Add(fibers)
	for c := 0; c < fibers; c++ {
		go func() {
			defer cons.Done()
			var k, s uint64
			ready.Done()
			<-start
			for v := range ch {
				k++
				s += v
			}
			mu.Lock()
			count += k
			sum += s
			mu.Unlock()
		}()
	}
	for p := 0; p < fibers; p++ {
		go func(p uint64) {
			defer prod.Done()
			ready.Done()
			<-start
			for i := uint64(0); i < per; i++ {
				ch <- p + i*fibers
			}
		}(uint64(p))
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	prod.Wait()
	close(ch)
	cons.Wait()
	d := time.Since(t0)
	// The values are exactly 0..total-1, each once.
	if count != total || sum != total*(total-1)/2 {
		return -1
	}
	return perOp(d, total)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: peer CASE N")
		os.Exit(2)
	}
	n, err := strconv.ParseUint(os.Args[2], 10, 64)
	if err != nil || n == 0 {
		fmt.Fprintln(os.Stderr, "peer: N must be a positive integer")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(procs)
	var v float64
	switch os.Args[1] {
	case "chan_bounded_1p1c":
		v = boundedOneToOne(n)
	case "chan_pingpong":
		v = pingPong(n)
	case "chan_fibers_4p4c":
		v = fibersFourToFour(n)
	default:
		fmt.Fprintln(os.Stderr, "peer: unknown case", os.Args[1])
		os.Exit(2)
	}
	fmt.Printf("%.6g\n", v)
}
