package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestScrapeCapacity: the GPU metrics come from the status's cost, a
// complete set per pool (0 where nothing is held), and every agent has
// its up gauge.
func TestScrapeCapacity(t *testing.T) {
	src := fakeSource{st: api.Status{Live: "green", Pools: map[string]api.Pool{"blue": {Name: "blue"}, "green": {Name: "green", Live: true}},
		Cost: &api.Cost{Usage: []api.GPUUsage{
			{Pool: "green", State: "live", GPUs: 4, GPUSeconds: 2400},
			{Pool: "blue", State: "retained_asleep", GPUs: 2, GPUSeconds: 1200},
			{Pool: "green", State: "candidate", GPUSeconds: 360},
		}},
		Agents: []api.AgentStatus{{Name: "gpu-a", Up: true}, {Name: "gpu-b", Up: false}},
	}}
	srv := httptest.NewServer(New(src).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	for _, want := range []string{
		`cutover_gpus{pool="green",state="live"} 4`,
		`cutover_gpus{pool="blue",state="retained_asleep"} 2`,
		`cutover_gpus{pool="green",state="candidate"} 0`,
		`cutover_gpus{pool="blue",state="idle"} 0`,
		`cutover_gpu_seconds_total{pool="green",state="candidate"} 360`,
		`cutover_gpu_seconds_total{pool="blue",state="retained_asleep"} 1200`,
		`cutover_gpu_seconds_total{pool="blue",state="live"} 0`,
		`cutover_agent_up{agent="gpu-a"} 1`,
		`cutover_agent_up{agent="gpu-b"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
