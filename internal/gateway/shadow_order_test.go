//go:build linux

package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCopyAfterLiveAnswer: a live request's shadow copy reaches the
// candidate only once the whole live answer is in the client's socket
// (a client that has not read a byte yet): copies never race the live
// answer for the cores, nor hold up its last write.
func TestCopyAfterLiveAnswer(t *testing.T) {
	e := validationEnv(t, nil)
	mock, err := mockllm.New(mockllm.Config{Model: "model-v2b", AnswerAs: "model-v1", Tokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	var client atomic.Pointer[net.TCPConn] // the live client whose copy is awaited
	seen := make(chan error, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			if c := client.Swap(nil); c != nil {
				seen <- answerComplete(c)
			}
		}
		mock.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	if _, err := e.admin.Deploy(context.Background(), api.DeployRequest{Model: "model-v2b", Replicas: []string{"http://" + ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	e.waitPhase(t, "validating", 20*time.Second)
	waitFor(t, "the shadow mirror to start", 20*time.Second, e.gw.Mirror().Active)
	for _, tc := range []struct {
		proto  string
		stream bool
	}{
		{"HTTP/1.1", false},
		{"HTTP/1.1", true},
		{"HTTP/1.0", false}, // served by the net/http fallback
	} {
		t.Run(tc.proto+" stream="+strconv.FormatBool(tc.stream), func(t *testing.T) {
			c, err := net.Dial("tcp", e.gw.TrafficAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client.Store(c.(*net.TCPConn))
			body := fmt.Sprintf(`{"model":"llama","temperature":0,"stream":%t,"messages":[{"role":"user","content":"hi"}]}`, tc.stream)
			req := "POST /v1/chat/completions " + tc.proto + "\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-seen:
				if err != nil {
					t.Fatalf("when the copy reached the candidate: %v", err)
				}
			case <-time.After(20 * time.Second):
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				b, _ := io.ReadAll(c)
				t.Fatalf("no copy reached the candidate; live answer %q, mirror %+v", b, e.gw.Mirror().Stats())
			}
		})
	}
}

// answerComplete reports whether c's receive queue holds a whole HTTP
// response, without reading it (MSG_PEEK).
func answerComplete(c *net.TCPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	n, rerr := 0, error(nil)
	if err := raw.Control(func(fd uintptr) { n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT) }); err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("no live answer in the client's socket yet: %w", rerr)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		return fmt.Errorf("the live answer's head is not all there (%d bytes): %w", n, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("the live answer is not all there (%d bytes, %d of the body): %w", n, len(b), err)
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New("live answer " + resp.Status)
	}
	return nil
}
