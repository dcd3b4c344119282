package metrics

import (
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestClientWriteTimeoutCounter: a client cut by the client write timeout
// is counted per pool, and not as an upstream error of the replica.
func TestClientWriteTimeoutCounter(t *testing.T) {
	u, _ := url.Parse("http://10.0.0.1:8000")
	r := pool.NewReplica(u)
	m := New(fakeSource{})
	for range 2 {
		m.Observe(&proxy.Observation{Pool: "blue", Replica: r, Status: 200, Stream: true, Error: "client_write_timeout"})
	}
	if got := testutil.ToFloat64(m.writeTimeouts.WithLabelValues("blue")); got != 2 {
		t.Errorf("cutover_client_write_timeouts_total{pool=blue} = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(m.errors); n != 0 {
		t.Errorf("%d upstream error series, want none", n)
	}
}

// TestBufferedBytesGauge: the gauge reads the data plane's count at
// scrape time.
func TestBufferedBytesGauge(t *testing.T) {
	m := New(fakeSource{})
	var n int64 = 4096
	m.RegisterBufferedBytes(func() int64 { return n })
	if got := testutil.ToFloat64(m.cols[len(m.cols)-1]); got != 4096 {
		t.Errorf("cutover_request_body_bytes_buffered = %v, want 4096", got)
	}
}
