package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cutover-dev/cutover/internal/shadow"
)

// TestDocsAndDashboardMatchRegistry: every cutover_ metric is documented
// in docs/metrics.md, and the Grafana dashboard only queries metrics that
// exist.
func TestDocsAndDashboardMatchRegistry(t *testing.T) {
	m := New(fakeSource{})
	m.RegisterShadow(shadow.New(shadow.Options{}))
	registered := map[string]bool{}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		registered[mf.GetName()] = true
	}
	// Vectors without observations do not gather; describe them instead.
	descs := describeAll(m)
	for _, d := range descs {
		registered[d] = true
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range registered {
		if strings.HasPrefix(name, "cutover_") && !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s is not documented in docs/metrics.md", name)
		}
	}
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	for _, name := range regexp.MustCompile(`cutover_[a-z_]+`).FindAllString(string(raw), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if !registered[base] {
			t.Errorf("dashboard queries %s, which cutover does not export", name)
		}
	}
}

// describeAll lists the names of every metric the registry's collectors
// describe, observed or not.
func describeAll(m *Metrics) []string {
	var names []string
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, col := range m.cols {
		ch := make(chan *prometheus.Desc, 64)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			if mm := re.FindStringSubmatch(d.String()); mm != nil {
				names = append(names, mm[1])
			}
		}
	}
	return names
}
