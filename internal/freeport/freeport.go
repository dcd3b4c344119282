// Package freeport picks loopback TCP ports for tests and the bench
// harness to hand to a process that binds them later.
//
// A port taken from the kernel (listen on port 0, close, hand it on) lies
// in the ephemeral range, which the kernel goes on giving to every other
// socket of the machine: to the next outgoing connection's local side and
// to the next listener on port 0. Under a parallel test run one of those
// takes it before the process it was meant for binds it ("address already
// in use"). The ports here come from below that range, where the kernel
// gives nothing on its own.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port picked: above the well-known and most
// registered services' ports.
const lowest = 10000

// Pick returns a TCP port that is free on 127.0.0.1 now, chosen at random
// below the kernel's ephemeral range (so that no socket given a port by
// the kernel takes it meanwhile). Two callers get the same port only by
// chance, once in thousands.
func Pick() (int, error) {
	hi := ephemeralLow() - 1
	if hi <= lowest {
		return kernelPort()
	}
	var last error
	for range 64 {
		p := lowest + rand.IntN(hi-lowest+1)
		if !claim(p) {
			continue // handed out already: its process may not have bound it yet
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			last = err
			continue
		}
		_ = ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("find a free port below %d: %w", hi+1, last)
}

// given holds the ports Pick returned in this process: one picked
// twice (two listeners of one test, picked before either binds) would
// fail the second process that binds it.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// claim records p as given and reports whether it was not given before.
func claim(p int) bool {
	given.Lock()
	defer given.Unlock()
	if given.ports[p] {
		return false
	}
	if given.ports == nil {
		given.ports = map[int]bool{}
	}
	given.ports[p] = true
	return true
}

// Addr is Pick as "127.0.0.1:PORT".
func Addr() (string, error) {
	p, err := Pick()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// kernelPort is a port the kernel picks, where the ephemeral range leaves
// no room below it.
func kernelPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
