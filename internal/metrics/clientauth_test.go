package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cutover-dev/cutover/internal/auth"
)

// TestClientAuthMetrics: every key id is exported from the start (at 0),
// counts follow the keys' use, and the names are documented.
func TestClientAuthMetrics(t *testing.T) {
	keys := auth.New([]auth.Key{{ID: "team-a"}, {ID: "ci", Models: []string{"llama"}}})
	m := New(fakeSource{})
	m.RegisterClientAuth(keys)
	keys.Authenticate("")
	keys.Allows(1, "other")
	keys.Allows(1, "other")
	want := `
# HELP cutover_client_forbidden_total Client requests refused (403 model_not_allowed) for a model their key may not use, by key id.
# TYPE cutover_client_forbidden_total counter
cutover_client_forbidden_total{key="ci"} 2
cutover_client_forbidden_total{key="team-a"} 0
# HELP cutover_client_requests_total Client requests authenticated with an API key of auth.api_keys_file, by key id (never the key).
# TYPE cutover_client_requests_total counter
cutover_client_requests_total{key="ci"} 0
cutover_client_requests_total{key="team-a"} 0
# HELP cutover_client_unauthorized_total Client requests refused (401 invalid_api_key) for a missing or unknown API key.
# TYPE cutover_client_unauthorized_total counter
cutover_client_unauthorized_total 1
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "cutover_client_requests_total", "cutover_client_forbidden_total", "cutover_client_unauthorized_total"); err != nil {
		t.Error(err)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cutover_client_requests_total", "cutover_client_forbidden_total", "cutover_client_unauthorized_total"} {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s is not documented in docs/metrics.md", name)
		}
	}
}
