package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestAffinityKey: the scanner finds the user string and the first user
// message's content, and nothing in bodies without them.
func TestAffinityKey(t *testing.T) {
	tests := []struct {
		body, field, want string
	}{
		{`{"model":"m","user":"alice"}`, "user", "alice"},
		{` { "user" : "a\"b" , "x": {"user":"no"} } `, "user", `a\"b`},
		{`{"user":"a","user":"b"}`, "user", "b"},
		{`{"x":{"user":"nested"}}`, "user", ""},
		{`{"user":""}`, "user", ""},
		{`{"user":42}`, "user", ""},
		{`{"user":"a"`, "user", ""},
		{`[]`, "user", ""},
		{`{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"hi"},{"role":"user","content":"again"}]}`, "first_message", `"hi"`},
		{`{"messages":[{"content":[{"type":"text","text":"x"}],"role":"user"}]}`, "first_message", `[{"type":"text","text":"x"}]`},
		{`{"messages":[{"role":"system","content":"be nice"}]}`, "first_message", ""},
		{`{"messages":[{"role":"user","content":null}]}`, "first_message", ""},
		{`{"messages":"no"}`, "first_message", ""},
		{`{"messages":[{"role":"user","content":"hi"}`, "first_message", ""},
		{`{"user":"alice"}`, "other", ""},
	}
	for _, tt := range tests {
		if got := string(affinityKey([]byte(tt.body), tt.field)); got != tt.want {
			t.Errorf("affinityKey(%s, %s) = %q, want %q", tt.body, tt.field, got, tt.want)
		}
	}
	b := []byte(tests[8].body)
	if n := testing.AllocsPerRun(100, func() { affinityKey(b, "first_message") }); n != 0 {
		t.Errorf("affinityKey allocates %v times", n)
	}
}

// TestCanaryHashAffinity: over both front ends at weight 50 with hash
// affinity, requests with the same user (or first user message) stay on
// one pool, different ones spread over both, a header key still wins,
// and bodies without the field are spread at random.
func TestCanaryHashAffinity(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := canaryHandler(t, Options{}, 50, "X-Session-Id")
			ct := *h.Table()
			ct.AffinityHash = []string{"user", "first_message"}
			h.Apply(&ct)
			addr := fe.start(t, h)
			post := func(body string, hdr map[string]string) string {
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				return resp.Header.Get("X-Cutover-Pool")
			}
			for _, src := range []struct {
				name string
				body func(i, turn int) string
			}{
				{"user", func(i, turn int) string {
					return fmt.Sprintf(`{"model":"m","user":"u%d","messages":[{"role":"user","content":"turn %d"}]}`, i, turn)
				}},
				{"first_message", func(i, turn int) string {
					msgs := fmt.Sprintf(`{"role":"system","content":"same"},{"role":"user","content":"chat %d"}`, i)
					for j := range turn {
						msgs += fmt.Sprintf(`,{"role":"assistant","content":"a%d"},{"role":"user","content":"q%d"}`, j, j)
					}
					return `{"model":"m","messages":[` + msgs + `]}`
				}},
			} {
				seen := map[string]int{}
				for i := range 40 {
					first := post(src.body(i, 0), nil)
					seen[first]++
					for turn := 1; turn < 4; turn++ {
						if got := post(src.body(i, turn), nil); got != first {
							t.Fatalf("%s %d served by %s then %s", src.name, i, first, got)
						}
					}
				}
				if seen["blue"] == 0 || seen["green"] == 0 {
					t.Fatalf("%s: at 50 %% 40 keys all went one way: %v", src.name, seen)
				}
			}
			// The header key wins over the body: one session, many users.
			first := post(`{"user":"u0"}`, map[string]string{"X-Session-Id": "s1"})
			for i := range 20 {
				if got := post(fmt.Sprintf(`{"user":"u%d"}`, i), map[string]string{"X-Session-Id": "s1"}); got != first {
					t.Fatalf("session s1 served by %s then %s", first, got)
				}
			}
			// Without the fields: random by weight, both pools seen.
			seen := map[string]int{}
			for range 200 {
				seen[post(`{"model":"m","prompt":"same"}`, nil)]++
				if seen["blue"] > 0 && seen["green"] > 0 {
					break
				}
			}
			if seen["blue"] == 0 || seen["green"] == 0 {
				t.Fatalf("without a key 200 requests all went one way: %v", seen)
			}
		})
	}
}
