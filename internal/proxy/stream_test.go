package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// lockStepPiece is one write of a replica's streamed body: wire is what
// the replica writes, data how many body bytes the client must then have
// received in total before the replica writes the next piece.
type lockStepPiece struct {
	wire string
	data int
}

// lockStepPieces are the body of a stream in writes of awkward sizes: a
// byte, a write that fills the replica connection's 4 KiB read buffer
// exactly, writes just below and above it, one of two buffers and more,
// and chunks split across writes. With chunked framing (the replica's
// chunks as they go to the client) or without (a body that ends when the
// replica closes).
func lockStepPieces(chunked bool) []lockStepPiece {
	var ps []lockStepPiece
	total := 0
	add := func(wire string, data int) {
		total += data
		ps = append(ps, lockStepPiece{wire, total})
	}
	for i, n := range []int{1, 17, 4089, 4090, 4088, 5000, 9000, 3, 100} {
		data := strings.Repeat(string(rune('a'+i)), n)
		split := 0 // a chunk written in two parts, split in its data
		if i == 2 || i == 6 {
			split = n / 3
		}
		if !chunked {
			if split > 0 {
				add(data[:split], split)
				add(data[split:], n-split)
			} else {
				add(data, n)
			}
			continue
		}
		frame := fmt.Sprintf("%x\r\n%s\r\n", n, data)
		if split > 0 {
			head := len(frame) - n - 2
			add(frame[:head+split], split)
			add(frame[head+split:], n-split)
		} else {
			add(frame, n)
		}
	}
	if chunked {
		ps = append(ps, lockStepPiece{"0\r\n\r\n", total})
	}
	return ps
}

// TestStreamLockStep: every write of a streaming replica reaches the
// client before the replica writes the next one: the replica waits for
// the client to have received each piece (so a piece the gateway held
// back, waiting for more, would stop the stream until testWait), over
// several streams on one client connection.
func TestStreamLockStep(t *testing.T) {
	for _, chunked := range []bool{true, false} {
		// Over net/http too (the framings the loop hands off): a chunk
		// that came in part is relayed as it came (a regression: Go's
		// chunked reader held it until the rest of the chunk came).
		for _, fe := range frontends {
			name := fe.name + "/close-delimited"
			if chunked {
				name = fe.name + "/chunked"
			}
			t.Run(name, func(t *testing.T) {
				pieces := lockStepPieces(chunked)
				received := make(chan int)
				backend := rawBackend(t, func(c net.Conn) {
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
						if chunked {
							head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
						}
						if _, err := io.WriteString(c, head); err != nil {
							return
						}
						for k, p := range pieces {
							if _, err := io.WriteString(c, p.wire); err != nil {
								return
							}
							if k == len(pieces)-1 {
								break // the end of the body: nothing to wait for
							}
							select {
							case n := <-received:
								if n != p.data {
									return
								}
							case <-time.After(testWait):
								return
							}
						}
						if !chunked {
							return // the close ends the body
						}
					}
				})
				h := newHandler(t, Options{}, "", backend)
				c, br := dialRaw(t, fe.start(t, h))
				streams := 3
				if !chunked {
					streams = 1 // the replica's close ends the stream and the connection to it
				}
				for s := range streams {
					writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, `{"stream":true}`))
					resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
					if err == nil && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked") {
						err = fmt.Errorf("transfer encoding %q", resp.TransferEncoding)
					}
					if err != nil {
						t.Fatalf("stream %d: %v", s, err)
					}
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("stream %d: status %d", s, resp.StatusCode)
					}
					// Go's chunked reader waits for the whole of a chunk:
					// count the body bytes as they come instead.
					dec := chunkCounter{r: br}
					for k, p := range pieces {
						for dec.data < p.data {
							if err := dec.step(); err != nil {
								t.Fatalf("stream %d, piece %d: %d of %d bytes, then %v (a piece held back until the next one?)", s, k, dec.data, p.data, err)
							}
						}
						if dec.data != p.data {
							t.Fatalf("stream %d, piece %d: %d bytes, want %d", s, k, dec.data, p.data)
						}
						if k < len(pieces)-1 {
							select {
							case received <- dec.data:
							case <-time.After(testWait):
								t.Fatalf("stream %d: the replica did not wait for piece %d", s, k)
							}
						}
					}
					for !dec.done {
						if err := dec.step(); err != nil {
							t.Fatalf("stream %d: after the body: %v", s, err)
						}
					}
				}
			})
		}
	}
}

// chunkCounter reads a chunked body from r and counts its data bytes as
// they arrive, a read at a time.
type chunkCounter struct {
	r    *bufio.Reader
	left int  // data bytes left in the current chunk; -1: a size line is next
	data int  // data bytes so far
	done bool // the last chunk and the final CRLF were read
	init bool
}

// step reads what comes next: a chunk's size line, the data the reader
// has (at least a byte) and the CRLF after a chunk's data.
func (c *chunkCounter) step() error {
	if !c.init {
		c.left, c.init = -1, true
	}
	switch {
	case c.left < 0:
		line, err := c.r.ReadString('\n')
		if err != nil {
			return err
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%x", &n); err != nil {
			return fmt.Errorf("chunk size line %q: %w", line, err)
		}
		if n == 0 {
			if crlf, err := c.r.ReadString('\n'); err != nil || crlf != "\r\n" {
				return fmt.Errorf("after the last chunk: %q, %v", crlf, err)
			}
			c.done = true
			return nil
		}
		c.left = n
	case c.left > 0:
		if _, err := c.r.Peek(1); err != nil {
			return err
		}
		n := min(c.left, c.r.Buffered())
		_, _ = c.r.Discard(n)
		c.left -= n
		c.data += n
	}
	if c.left == 0 {
		var crlf [2]byte
		if _, err := io.ReadFull(c.r, crlf[:]); err != nil || string(crlf[:]) != "\r\n" {
			return fmt.Errorf("after a chunk's data: %q, %v", crlf, err)
		}
		c.left = -1
	}
	return nil
}

// TestStreamBodyWithHead: body bytes that reach the gateway with the
// replica's head go out with it (the head's write), and the rest follows:
// a whole chunked answer in one replica write, the first event with the
// head and the rest after the client has it, a close-delimited body with
// its head. The connections are kept for the next request where the
// answer allows.
func TestStreamBodyWithHead(t *testing.T) {
	const sse = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name   string
		writes []string // the replica's writes; the client's reads of each body part come between them
		parts  []string // the body the client reads after each write
		close  bool     // the replica closes after the writes (the close ends the body)
	}{
		{"whole chunked answer in one write",
			[]string{sse + "b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n"},
			[]string{"data: one\n\ndata: two\n\n"}, false},
		{"first event with the head",
			[]string{sse + "b\r\ndata: one\n\n\r\n", "b\r\ndata: two\n\n\r\n0\r\n\r\n"},
			[]string{"data: one\n\n", "data: two\n\n"}, false},
		{"close-delimited body with the head",
			[]string{"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: one\n\n", "data: two\n\n"},
			[]string{"data: one\n\n", "data: two\n\n"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan struct{})
			conns := make(chan struct{}, 4)
			replica := rawBackend(t, func(c net.Conn) {
				conns <- struct{}{}
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					for i, w := range tc.writes {
						if i > 0 {
							select {
							case <-got:
							case <-time.After(testWait):
								return
							}
						}
						if _, err := io.WriteString(c, w); err != nil {
							return
						}
					}
					if tc.close {
						return
					}
				}
			})
			h := newHandler(t, Options{}, "", replica)
			c, br := dialRaw(t, startLoop(t, h))
			requests := 2
			if tc.close {
				requests = 1
			}
			for r := range requests {
				writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, `{"stream":true}`))
				resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err != nil {
					t.Fatalf("request %d: %v", r, err)
				}
				dec := chunkCounter{r: br}
				want := 0
				for i, p := range tc.parts {
					want += len(p)
					for dec.data < want {
						if err := dec.step(); err != nil {
							t.Fatalf("request %d, part %d: %d of %d body bytes, then %v", r, i, dec.data, want, err)
						}
					}
					if i < len(tc.parts)-1 {
						select {
						case got <- struct{}{}:
						case <-time.After(testWait):
							t.Fatalf("request %d: the replica did not wait", r)
						}
					}
				}
				for !dec.done {
					if err := dec.step(); err != nil {
						t.Fatalf("request %d: after %d body bytes: %v", r, dec.data, err)
					}
				}
				if dec.data != want || resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: status %d, %d body bytes, want 200 and %d", r, resp.StatusCode, dec.data, want)
				}
			}
			if !tc.close && len(conns) != 1 {
				t.Errorf("%d replica connections for %d requests, want 1 (the first kept)", len(conns), requests)
			}
		})
	}
}

// TestStreamToSlowReader: a stream the client reads slower than the
// replica sends arrives whole and in order: the gateway's writes take
// part of what they were given and wait for room (small socket buffers
// between the gateway and the client), the head with the first chunks
// included.
func TestStreamToSlowReader(t *testing.T) {
	const chunks, size = 1000, 8 << 10
	chunk := func(i int) string {
		return fmt.Sprintf("data: %06d %s\n\n", i, strings.Repeat(string(rune('a'+i%26)), size))
	}
	replica := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		w := bufio.NewWriterSize(c, 64<<10)
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range chunks {
			d := chunk(i)
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(d), d)
			if i < 3 || i%16 == 0 {
				_ = w.Flush() // the first ones with the head, then in bursts
			}
		}
		_, _ = io.WriteString(w, "0\r\n\r\n")
		_ = w.Flush()
	})
	h := newHandler(t, Options{}, "", replica)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, ReadHeaderTimeout: 2 * time.Second}
	served := make(chan error, 1)
	go func() { served <- s.Serve(smallSendBuffers{ln}) }()
	t.Cleanup(func() {
		_ = s.Close()
		<-served
	})
	c, err := net.DialTimeout("tcp", ln.Addr().String(), testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
	_ = c.SetDeadline(time.Now().Add(testWait))
	writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, `{"stream":true}`))
	resp, err := http.ReadResponse(bufio.NewReaderSize(&smallReads{c}, 512), &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("after %d bytes: %v", len(body), err)
	}
	var want strings.Builder
	for i := range chunks {
		want.WriteString(chunk(i))
	}
	if string(body) != want.String() {
		t.Fatalf("body of %d bytes differs from the %d the replica sent", len(body), want.Len())
	}
}

// smallReads reads at most 300 bytes at a time.
type smallReads struct{ r io.Reader }

func (s *smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 300)]) }

// smallSendBuffers gives every accepted connection a small send buffer,
// so that the gateway's writes to a slow client fill it.
type smallSendBuffers struct{ *net.TCPListener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err == nil {
		_ = c.SetWriteBuffer(8 << 10)
	}
	return c, err
}
