package gateway_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestDrainOnStop: stopping the gateway lets an in-flight stream finish,
// refuses new connections, and returns nil.
func TestDrainOnStop(t *testing.T) {
	e := newEnv(t, envOptions{mock: mockllm.Config{ITL: 50 * time.Millisecond, Tokens: 20}})
	type out struct {
		res result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := e.chat(context.Background(), "model-v1", "long one", true, "")
		done <- out{res, err}
	}()
	waitFor(t, "the stream to start", 10*time.Second, func() bool { return e.gw.Controller().Status().Pools["blue"].InFlight == 1 })
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	waitFor(t, "the listener to close", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", e.gw.TrafficAddr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	o := <-done
	if o.err != nil || !o.res.done || o.res.text != mockllm.Answer("model-v1", "long one", 20) {
		t.Fatalf("stream cut by shutdown: %+v %v", o.res, o.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v after a clean drain", err)
	}
}
