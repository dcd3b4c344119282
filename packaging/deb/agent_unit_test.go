package main

import (
	"strings"
	"testing"
)

// TestAgentUnitTmpOutlivesRestart: the agent's replicas outlive a stop of
// its unit (KillMode=process), so their temporary directory must too.
// systemd deletes a unit's private /tmp when it stops: PrivateTmp=yes
// pulled vLLM's sockets and caches from under the running replicas at
// every `systemctl restart cutover-agent` (regression). The replicas get
// TMPDIR under the agent's StateDirectory instead, which systemd creates.
func TestAgentUnitTmpOutlivesRestart(t *testing.T) {
	b, err := packaged.ReadFile("files/cutover-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			keys[k] = append(keys[k], strings.Fields(v)...)
		}
	}
	last := func(k string) string {
		if v := keys[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	if last("KillMode") != "process" {
		t.Fatalf("KillMode=%q: this test is about replicas that outlive the agent", last("KillMode"))
	}
	if p := last("PrivateTmp"); p != "no" {
		t.Errorf("PrivateTmp=%q with KillMode=process: the replicas' /tmp is deleted when the unit stops; want no", p)
	}
	tmpdir := ""
	for _, kv := range keys["Environment"] {
		if v, ok := strings.CutPrefix(kv, "TMPDIR="); ok {
			tmpdir = v
		}
	}
	state := false
	for _, d := range keys["StateDirectory"] {
		state = state || tmpdir == "/var/lib/"+d
	}
	if !state {
		t.Errorf("TMPDIR=%q is not one of the StateDirectory= %v (under /var/lib): systemd would not create it, or not keep it across restarts", tmpdir, keys["StateDirectory"])
	}
}
