package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// TestReplicaCredentials: a replica with a key gets its own Authorization
// and never the client's; without one, the client's reaches it only with
// ForwardClientAuthorization. Every frontend and transport decides alike.
func TestReplicaCredentials(t *testing.T) {
	backend := newEchoBackend(t)
	cases := []struct {
		name       string
		replicaKey string
		forward    bool
		clientAuth string
		want       []string // the Authorization the replica saw; nil: none
	}{
		{"no key, client header dropped", "", false, "Bearer client", nil},
		{"no key, client header forwarded", "", true, "Bearer client", []string{"Bearer client"}},
		{"replica key replaces the client's", "Bearer replica", false, "Bearer client", []string{"Bearer replica"}},
		{"replica key wins over forwarding", "Bearer replica", true, "Bearer client", []string{"Bearer replica"}},
		{"replica key, client sent none", "Bearer replica", false, "", []string{"Bearer replica"}},
	}
	transports := []struct {
		name string
		rt   func(t *testing.T) http.RoundTripper
	}{
		{"upstream", func(t *testing.T) http.RoundTripper {
			u := &Upstream{}
			t.Cleanup(u.CloseIdleConnections)
			return u
		}},
		{"http-transport", func(t *testing.T) http.RoundTripper {
			tr := NewTransport(0, 0)
			t.Cleanup(tr.CloseIdleConnections)
			return tr
		}},
	}
	for _, fe := range frontends {
		for _, tr := range transports {
			for _, tc := range cases {
				t.Run(fe.name+"/"+tr.name+"/"+tc.name, func(t *testing.T) {
					u, err := url.Parse(backend.URL)
					if err != nil {
						t.Fatal(err)
					}
					rep := pool.NewReplica(u)
					rep.Authorization = tc.replicaKey
					h := New(Options{Transport: tr.rt(t), Logger: quiet, ForwardClientAuthorization: tc.forward})
					h.Apply(route.New(1, "blue", "", &pool.Pool{Name: "blue", Model: "m", Replicas: []*pool.Replica{rep}}, &pool.Pool{Name: "green"}))
					var addr string
					if fe.name == "loop" && tr.name != "upstream" {
						addr = startServer(t, &Server{Handler: h}) // hands every connection to net/http
					} else {
						addr = fe.start(t, h)
					}
					var hdr []string
					if tc.clientAuth != "" {
						hdr = append(hdr, "Authorization: "+tc.clientAuth)
					}
					c, br := dialRaw(t, addr)
					writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", hdr, `{"model":"m"}`))
					resp, body := readResp(t, br, "POST")
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d: %.300q", resp.StatusCode, body)
					}
					if got := decodeEcho(t, body).Header["Authorization"]; !slices.Equal(got, tc.want) {
						t.Errorf("replica saw Authorization %q, want %q", got, tc.want)
					}
				})
			}
		}
	}
}
