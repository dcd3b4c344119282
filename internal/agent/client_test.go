package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClientStartStopOverTheAPI(t *testing.T) {
	h := startAgent(t, testConfig(t, mockCommand()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := NewClient("gpu-a", h.url, testToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if free, total, err := c.FreeGPUs(ctx); err != nil || free != 4 || total != 4 {
		t.Fatalf("FreeGPUs = %d of %d, %v; want 4 of 4", free, total, err)
	}
	r, err := c.Start(ctx, "m-1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GPUs) != 2 || r.Model != "m-1" {
		t.Fatalf("Start = %+v", r)
	}
	if got, want := c.ReplicaURL(r), "http://127.0.0.1:"+strings.TrimPrefix(r.URL, "http://127.0.0.1:"); got != want {
		t.Fatalf("ReplicaURL = %s, want %s", got, want)
	}
	awaitReplica(t, h.url, r.ID, "running", stateIs(StateRunning))
	if code, _ := chat(t, c.ReplicaURL(r), "m-1"); code != http.StatusOK {
		t.Fatalf("chat on the replica: %d", code)
	}
	if free, _, _ := c.FreeGPUs(ctx); free != 2 {
		t.Fatalf("free after start = %d, want 2", free)
	}
	if rs, err := c.Replicas(ctx); err != nil || len(rs) != 1 || rs[0].ID != r.ID {
		t.Fatalf("Replicas = %+v, %v", rs, err)
	}
	if got, err := c.Stop(ctx, r.ID); err != nil || got.State != StateExited {
		t.Fatalf("Stop = %+v, %v", got, err)
	}
	if free, _, _ := c.FreeGPUs(ctx); free != 4 {
		t.Fatalf("free after stop = %d, want 4", free)
	}
	// Errors carry the agent's status and message.
	_, err = c.Replica(ctx, "nope")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(ae.Message, "nope") {
		t.Fatalf("Replica(nope) = %v, want a 404 APIError", err)
	}
	_, err = c.Start(ctx, "m-1", 5)
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("Start 5 GPUs of 4 = %v, want 503", err)
	}
	bad, _ := NewClient("gpu-a", h.url, "wrong", nil)
	if _, err := bad.Replicas(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token = %v, want 401", err)
	}
	// The context bounds every call.
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := c.Replicas(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context = %v", err)
	}
	if _, err := NewClient("x", "ftp://h:1", "t", nil); err == nil {
		t.Fatal("NewClient accepted ftp://")
	}
}
