package main

import (
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestFaultHint: the demo's "break a replica" hint names a simulated
// replica that a pool holds at that moment (regression: with an empty
// standby it named a spare that no pool held, so breaking it changed
// nothing in status).
func TestFaultHint(t *testing.T) {
	pool := func(urls ...string) api.Pool {
		p := api.Pool{}
		for _, u := range urls {
			p.Replicas = append(p.Replicas, api.Replica{URL: u})
		}
		return p
	}
	sim := []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:4"}
	tests := []struct {
		name string
		st   api.Status
		want string // the replica named, "" for no hint
	}{
		{"standby's first", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool(sim[1], sim[2])}}, sim[1]},
		{"green live", api.Status{Live: "green", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool(sim[1])}}, sim[0]},
		{"empty standby: the live pool's", api.Status{Live: "green", Pools: map[string]api.Pool{"blue": pool(), "green": pool(sim[3])}}, sim[3]},
		{"standby not simulated", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool(sim[0]), "green": pool("http://10.0.0.9:8000")}}, sim[0]},
		{"nothing simulated", api.Status{Live: "blue", Pools: map[string]api.Pool{"blue": pool("http://10.0.0.8:8000"), "green": pool()}}, ""},
	}
	for _, tt := range tests {
		got := faultHint(tt.st, sim)
		switch {
		case tt.want == "" && got != "":
			t.Errorf("%s: hint %q, want none", tt.name, got)
		case tt.want != "" && !strings.Contains(got, tt.want+"/mock/faults"):
			t.Errorf("%s: hint %q, want it to name %s", tt.name, got, tt.want)
		}
	}
}
