package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

const nginxMinimal = minimal + `driver: nginx
nginx:
  upstream_file: /etc/nginx/cutover/upstream.conf
  verify_url: http://127.0.0.1:8000/health
`

const haproxyMinimal = minimal + `driver: haproxy
haproxy:
  admin_socket: /run/haproxy/admin.sock
  map_file: /etc/haproxy/cutover.map
  verify_url: http://127.0.0.1:8000/health
`

func TestDriverDefaults(t *testing.T) {
	n, err := config.Parse([]byte(nginxMinimal))
	if err != nil {
		t.Fatal(err)
	}
	wantN := config.NginxDriver{
		UpstreamFile: "/etc/nginx/cutover/upstream.conf", UpstreamName: "cutover", Keepalive: 32,
		TestCommand: []string{"nginx", "-t"}, ReloadCommand: []string{"nginx", "-s", "reload"},
		CommandTimeout: config.Duration(30 * time.Second), VerifyURL: "http://127.0.0.1:8000/health", VerifyTimeout: config.Duration(10 * time.Second),
	}
	if !reflect.DeepEqual(n.Nginx, wantN) {
		t.Errorf("nginx =\n%+v\nwant\n%+v", n.Nginx, wantN)
	}
	h, err := config.Parse([]byte(haproxyMinimal))
	if err != nil {
		t.Fatal(err)
	}
	wantH := config.HAProxyDriver{
		AdminSocket: "/run/haproxy/admin.sock", MapFile: "/etc/haproxy/cutover.map", MapKey: "live",
		Backends: map[string]string{"blue": "blue", "green": "green"}, SocketTimeout: config.Duration(5 * time.Second),
		VerifyURL: "http://127.0.0.1:8000/health", VerifyTimeout: config.Duration(10 * time.Second),
	}
	if !reflect.DeepEqual(h.HAProxy, wantH) {
		t.Errorf("haproxy =\n%+v\nwant\n%+v", h.HAProxy, wantH)
	}
}

func TestDriverOverrides(t *testing.T) {
	c, err := config.Parse([]byte(nginxMinimal + `  keepalive: 0
  test_command: [/usr/sbin/nginx, -t, -c, /etc/nginx/nginx.conf]
  upstream_directives: [least_conn]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Nginx.Keepalive != 0 || len(c.Nginx.TestCommand) != 4 || c.Nginx.UpstreamDirectives[0] != "least_conn" {
		t.Errorf("overrides not taken: %+v", c.Nginx)
	}
	c, err = config.Parse([]byte(haproxyMinimal + "  backends: {green: llm_green}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"blue": "blue", "green": "llm_green"}; !reflect.DeepEqual(c.HAProxy.Backends, want) {
		t.Errorf("backends = %v, want %v", c.HAProxy.Backends, want)
	}
}

func TestDriverErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		key  string
		msg  []string
	}{
		{"unknown driver", minimal + "driver: envoy\n", "driver", []string{`"envoy"`, "builtin, nginx, haproxy"}},
		{"nginx section without driver", minimal + "nginx: {upstream_file: /x}\n", "nginx", []string{"driver: nginx"}},
		{"haproxy section without driver", minimal + "haproxy: {map_key: k}\n", "haproxy", []string{"driver: haproxy"}},
		{"model_name with nginx", nginxMinimal + "model_name: llama\n", "model_name", []string{"driver nginx", "rewrite", "--served-model-name"}},
		{"model_name with haproxy", haproxyMinimal + "model_name: llama\n", "model_name", []string{"driver haproxy"}},
		{"replica with a path", strings.Replace(nginxMinimal, "http://127.0.0.1:8002", "http://127.0.0.1:8002/v2", 1),
			"pools.green.replicas[0]", []string{"path prefix", "driver nginx"}},
		{"mixed schemes", strings.Replace(nginxMinimal, "[http://127.0.0.1:8001]", "[http://127.0.0.1:8001, https://127.0.0.1:8003]", 1),
			"pools.blue.replicas", []string{"mixes http and https"}},
		{"no upstream file", strings.Replace(nginxMinimal, "  upstream_file: /etc/nginx/cutover/upstream.conf\n", "", 1),
			"nginx.upstream_file", []string{"must be set"}},
		{"relative upstream file", strings.Replace(nginxMinimal, "/etc/nginx/cutover/upstream.conf", "upstream.conf", 1),
			"nginx.upstream_file", []string{"absolute"}},
		{"bad upstream name", nginxMinimal + "  upstream_name: my-llm\n", "nginx.upstream_name", []string{`"my-llm"`}},
		{"negative keepalive", nginxMinimal + "  keepalive: -1\n", "nginx.keepalive", []string{"-1"}},
		{"directive with braces", nginxMinimal + "  upstream_directives: [\"} server {\"]\n", "nginx.upstream_directives[0]", []string{"braces"}},
		{"empty test command", nginxMinimal + "  test_command: []\n", "nginx.test_command", []string{"argv"}},
		{"no verify url", strings.Replace(nginxMinimal, "  verify_url: http://127.0.0.1:8000/health\n", "", 1),
			"nginx.verify_url", []string{"must be set", "through nginx"}},
		{"verify url not http", strings.Replace(nginxMinimal, "http://127.0.0.1:8000/health", "127.0.0.1:8000", 1),
			"nginx.verify_url", []string{"not an http(s) URL"}},
		{"verify url is cutover's listener", strings.Replace(nginxMinimal, "http://127.0.0.1:8000/health", "http://localhost:8080/health", 1),
			"nginx.verify_url", []string{"cutover's own traffic listener"}},
		// Compared as listeners are: localhost is 127.0.0.1 both ways.
		{"verify url is cutover's listener written another way", nginxMinimal + "listen: localhost:8000\n",
			"nginx.verify_url", []string{"cutover's own traffic listener"}},
		{"zero verify timeout", nginxMinimal + "  verify_timeout: 0s\n", "nginx.verify_timeout", []string{"positive"}},
		{"no admin socket", strings.Replace(haproxyMinimal, "  admin_socket: /run/haproxy/admin.sock\n", "", 1),
			"haproxy.admin_socket", []string{"must be set", "level admin"}},
		{"map file with parentheses", strings.Replace(haproxyMinimal, "/etc/haproxy/cutover.map", "/tmp/a(b)/cutover.map", 1),
			"haproxy.map_file", []string{"parentheses"}},
		{"map key with a space", haproxyMinimal + "  map_key: \"a b\"\n", "haproxy.map_key", []string{"one word"}},
		// ';' separates commands on HAProxy's Runtime API.
		{"map file with a semicolon", strings.Replace(haproxyMinimal, "/etc/haproxy/cutover.map", "/tmp/m.map;shutdown", 1),
			"haproxy.map_file", []string{`"/tmp/m.map;shutdown"`, "Runtime API"}},
		{"map key with a semicolon", haproxyMinimal + "  map_key: \"live;help\"\n", "haproxy.map_key", []string{"one word"}},
		{"backend with a semicolon", haproxyMinimal + "  backends: {blue: \"blue;help\", green: g}\n", "haproxy.backends.blue", []string{"not a backend name"}},
		{"upstream file is a directory", strings.Replace(nginxMinimal, "/etc/nginx/cutover/upstream.conf", "/tmp/", 1),
			"nginx.upstream_file", []string{"directory"}},
		{"backend of an unknown pool", haproxyMinimal + "  backends: {red: r}\n", "haproxy.backends.red", []string{`"red"`}},
		{"one backend for both pools", haproxyMinimal + "  backends: {green: blue}\n", "haproxy.backends.green", []string{"each pool needs its own"}},
		{"relative config file", haproxyMinimal + "  config_file: haproxy.cfg\n", "haproxy.config_file", []string{"absolute"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse = %v, want a *config.Error", err)
			}
			for _, f := range ce.Fields {
				if f.Key != tt.key {
					continue
				}
				for _, m := range tt.msg {
					if !strings.Contains(f.Msg, m) {
						t.Errorf("%s: message %q lacks %q", f.Key, f.Msg, m)
					}
				}
				return
			}
			t.Errorf("no error for key %s in:\n%v", tt.key, err)
		})
	}
}

// TestDriverExamplesParse: the example configurations shipped for nginx
// and HAProxy are valid.
func TestDriverExamplesParse(t *testing.T) {
	for _, f := range []string{"nginx/cutover.yaml", "haproxy/cutover.yaml"} {
		path := filepath.Join("..", "..", "examples", f)
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(path); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
