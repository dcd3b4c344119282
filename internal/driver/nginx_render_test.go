package driver_test

import (
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/driver"
	"github.com/cutover-dev/cutover/internal/pool"
)

func TestRenderNginx(t *testing.T) {
	blue := []string{"http://10.0.0.1:8000", "http://10.0.0.2:8000"}
	tests := []struct {
		name    string
		live    string
		pools   map[string][]string
		opts    driver.NginxRender
		want    []string // lines the file must hold, in this order
		notWant []string
	}{
		{
			name:  "healthy replicas with keepalive",
			live:  "blue",
			pools: map[string][]string{"blue": blue, "green": {"http://10.0.1.1:8000"}},
			opts:  driver.NginxRender{Upstream: "cutover", Keepalive: 32},
			want: []string{"upstream cutover {", "    server 10.0.0.1:8000;", "    server 10.0.0.2:8000;", "    keepalive 32;", "}",
				`map "" $cutover_pool {`, "    default blue;", `map "" $cutover_scheme {`, "    default http;", `map "" $cutover_config {`},
			notWant: []string{"10.0.1.1", " down;"},
		},
		{
			name:    "unhealthy replica marked down, no keepalive",
			live:    "green",
			pools:   map[string][]string{"blue": blue, "green": {"http://10.0.1.1:8000", "!http://10.0.1.2:8000"}},
			opts:    driver.NginxRender{Upstream: "llm"},
			want:    []string{"upstream llm {", "    server 10.0.1.1:8000;", "    server 10.0.1.2:8000 down; # failing health checks", `map "" $llm_pool {`, "    default green;"},
			notWant: []string{"keepalive", "10.0.0.1"},
		},
		{
			name:  "https replicas, default port, IPv6",
			live:  "blue",
			pools: map[string][]string{"blue": {"https://gpu1.internal", "https://[fd00::1]:8443"}},
			opts:  driver.NginxRender{Upstream: "cutover", Keepalive: 8},
			want:  []string{"    server gpu1.internal:443;", "    server [fd00::1]:8443;", "    default https;"},
		},
		{
			name:  "extra directives before keepalive",
			live:  "blue",
			pools: map[string][]string{"blue": blue},
			opts:  driver.NginxRender{Upstream: "cutover", Keepalive: 16, Directives: []string{"least_conn;", " keepalive_timeout 120s "}},
			want:  []string{"    server 10.0.0.2:8000;", "    least_conn;", "    keepalive_timeout 120s;", "    keepalive 16;"},
		},
		{
			name:  "every replica down",
			live:  "blue",
			pools: map[string][]string{"blue": {"!http://10.0.0.1:8000"}},
			opts:  driver.NginxRender{Upstream: "cutover"},
			want:  []string{"    server 10.0.0.1:8000 down; # failing health checks"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pools := map[string][]*pool.Replica{}
			for name, urls := range tt.pools {
				pools[name] = replicas(t, urls...)
			}
			b, version, err := driver.RenderNginx(table(tt.live, pools), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			lines := strings.Split(got, "\n")
			at := 0
			for _, w := range tt.want {
				i := indexFrom(lines, at, w)
				if i < 0 {
					t.Fatalf("line %q missing (or out of order) in\n%s", w, got)
				}
				at = i + 1
			}
			for _, nw := range tt.notWant {
				if strings.Contains(got, nw) {
					t.Errorf("file holds %q:\n%s", nw, got)
				}
			}
			if len(version) != 12 || !strings.Contains(got, "    default "+version+";\n") {
				t.Errorf("version %q not the $..._config value in\n%s", version, got)
			}
			again, v2, _ := driver.RenderNginx(table(tt.live, pools), tt.opts)
			if string(again) != got || v2 != version {
				t.Error("rendering the same table twice differs: every apply would reload nginx")
			}
		})
	}
}

func indexFrom(lines []string, from int, want string) int {
	for i := from; i < len(lines); i++ {
		if lines[i] == want {
			return i
		}
	}
	return -1
}

// TestRenderNginxVersionFollowsContent: a health change changes the
// version (the verification tells new workers from old by it).
func TestRenderNginxVersionFollowsContent(t *testing.T) {
	rs := replicas(t, "http://10.0.0.1:8000", "http://10.0.0.2:8000")
	tb := table("blue", map[string][]*pool.Replica{"blue": rs})
	o := driver.NginxRender{Upstream: "cutover", Keepalive: 32}
	_, v1, _ := driver.RenderNginx(tb, o)
	rs[1].SetInitial(rs[1].Health().CheckedAt, errDown)
	_, v2, _ := driver.RenderNginx(tb, o)
	if v1 == v2 {
		t.Errorf("version %s unchanged after a replica went down", v1)
	}
}

func TestRenderNginxRefuses(t *testing.T) {
	tests := []struct {
		name string
		urls []string
		opts driver.NginxRender
		want string
	}{
		{"no replica", nil, driver.NginxRender{Upstream: "cutover"}, "no replica"},
		{"mixed schemes", []string{"http://a:1", "https://b:2"}, driver.NginxRender{Upstream: "cutover"}, "mixes http and https"},
		{"path prefix", []string{"http://a:1/v2"}, driver.NginxRender{Upstream: "cutover"}, "path prefix"},
		{"directive with a brace", []string{"http://a:1"}, driver.NginxRender{Upstream: "cutover", Directives: []string{"} server { listen 80"}}, "without braces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := driver.RenderNginx(table("blue", map[string][]*pool.Replica{"blue": replicas(t, tt.urls...)}), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}
