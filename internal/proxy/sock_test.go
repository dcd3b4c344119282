package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSockLikeNetConn: the hot path's raw reads and writes (sock) answer
// like net.Conn's own Read and Write in every case the proxy tells apart:
// data, end of file, a passed deadline, a closed connection, a reset, and
// a write larger than the socket buffers that must wait for the reader.
func TestSockLikeNetConn(t *testing.T) {
	type check func(t *testing.T, read func([]byte) (int, error), write func([]byte) (int, error), c, peer *net.TCPConn)
	cases := []struct {
		name string
		run  check
	}{
		{"data", func(t *testing.T, read func([]byte) (int, error), _ func([]byte) (int, error), _, peer *net.TCPConn) {
			go func() { _, _ = peer.Write([]byte("hello")) }()
			buf := make([]byte, 16)
			n, err := read(buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("read = %q, %v", buf[:n], err)
			}
		}},
		{"end of file", func(t *testing.T, read func([]byte) (int, error), _ func([]byte) (int, error), _, peer *net.TCPConn) {
			_ = peer.CloseWrite()
			n, err := read(make([]byte, 16))
			if n != 0 || err != io.EOF {
				t.Fatalf("read = %d, %v; want 0, io.EOF", n, err)
			}
		}},
		{"read deadline", func(t *testing.T, read func([]byte) (int, error), _ func([]byte) (int, error), c, _ *net.TCPConn) {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := read(make([]byte, 16))
			if !isTimeout(err) {
				t.Fatalf("read error %v is not a timeout", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "read" {
				t.Fatalf("read error %#v is not a read *net.OpError", err)
			}
		}},
		{"closed", func(t *testing.T, read func([]byte) (int, error), write func([]byte) (int, error), c, _ *net.TCPConn) {
			_ = c.Close()
			if _, err := read(make([]byte, 16)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read error %v is not net.ErrClosed", err)
			}
			if _, err := write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write error %v is not net.ErrClosed", err)
			}
		}},
		{"reset", func(t *testing.T, read func([]byte) (int, error), write func([]byte) (int, error), _, peer *net.TCPConn) {
			_ = peer.SetLinger(0)
			_ = peer.Close() // RST
			var err error
			for range 100 { // the reset arrives at once on loopback; bounded
				if _, err = write([]byte("x")); err != nil {
					break
				}
			}
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write error %v: want ECONNRESET or EPIPE", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "write" {
				t.Fatalf("write error %#v is not a write *net.OpError", err)
			}
		}},
		{"write waits for room", func(t *testing.T, _ func([]byte) (int, error), write func([]byte) (int, error), _, peer *net.TCPConn) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
				got <- b
			}()
			n, err := write(big)
			if n != len(big) || err != nil {
				t.Fatalf("write = %d, %v; want %d, nil", n, err, len(big))
			}
			if b := <-got; !bytes.Equal(b, big) {
				t.Fatalf("the peer read %d bytes, not what was written", len(b))
			}
		}},
		{"write deadline", func(t *testing.T, _ func([]byte) (int, error), write func([]byte) (int, error), c, _ *net.TCPConn) {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := write(bytes.Repeat([]byte("x"), 16<<20)) // the peer never reads
			if !isTimeout(err) || n >= 16<<20 {
				t.Fatalf("write = %d, %v; want a timeout part-way", n, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/sock", func(t *testing.T) {
			c, peer := tcpPair(t)
			var s sock
			if !s.init(c) {
				t.Skip("no raw socket access on this platform")
			}
			tc.run(t, func(p []byte) (int, error) { return s.read(c, p) }, func(b []byte) (int, error) { return s.write(c, b) }, c, peer)
		})
		t.Run(tc.name+"/net.Conn", func(t *testing.T) {
			c, peer := tcpPair(t)
			tc.run(t, c.Read, c.Write, c, peer)
		})
	}
}
