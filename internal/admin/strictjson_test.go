package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cutover-dev/cutover/api"
)

// calls is the number of actions c was asked for.
func (c *recordingCtrl) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func newRecordingAdmin(t *testing.T) (*recordingCtrl, *http.Server) {
	t.Helper()
	ctrl := &recordingCtrl{}
	s, err := New(ctrl, stubToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ctrl, NewHTTPServer(s, nil)
}

// TestAdminHTTP10BodyNeedsLength: an HTTP/1.0 write without Content-Length
// is refused before anything acts (a regression: one with a chunked body
// rolled back, its expected_revision never read, as net/http ignores
// Transfer-Encoding in HTTP/1.0).
func TestAdminHTTP10BodyNeedsLength(t *testing.T) {
	for _, tc := range []struct {
		name      string
		req       string
		status    int
		rollbacks int
	}{
		{"chunked", "POST /api/v1/rollback HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer " + stubToken +
			"\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n{\"expected_revision\":999}\r\n0\r\n\r\n", http.StatusLengthRequired, 0},
		{"no length, no body", "POST /api/v1/rollback HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer " + stubToken + "\r\n\r\n",
			http.StatusLengthRequired, 0},
		{"with length", "POST /api/v1/rollback HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer " + stubToken +
			"\r\nContent-Length: 25\r\n\r\n{\"expected_revision\":999}", http.StatusOK, 1},
		{"a read needs none", "GET /api/v1/status HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer " + stubToken + "\r\n\r\n",
			http.StatusOK, 0},
		{"no body method, no path", "DELETE /api/v1/nothing HTTP/1.0\r\nHost: a\r\nAuthorization: Bearer " + stubToken + "\r\n\r\n",
			http.StatusNotFound, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, srv := newRecordingAdmin(t)
			c, br := serveAdmin(t, srv)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusLengthRequired && !strings.Contains(string(body), `"code":"length_required"`) {
				t.Errorf("body %s", body)
			}
			if n := ctrl.calls(); n != tc.rollbacks {
				t.Fatalf("%d rollbacks, want %d", n, tc.rollbacks)
			}
			if tc.rollbacks > 0 && ctrl.got[0].(api.RollbackRequest).ExpectedRevision != 999 {
				t.Errorf("the body did not reach the controller: %+v", ctrl.got[0])
			}
		})
	}
}

// TestAdminStrictJSON: what encoding/json accepts but changes is refused
// with 400 bad_json and reaches no action.
func TestAdminStrictJSON(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
		want             string // in the message; "" for success
	}{
		{"field in another case", "/api/v1/rollback", `{"Expected_Revision":3}`, `did you mean \"expected_revision\"`},
		{"field twice", "/api/v1/rollback", `{"to":"blue","to":"green"}`, `field \"to\" given twice`},
		{"escaped name twice", "/api/v1/rollback", `{"to":"blue","\u0074o":"green"}`, `given twice`},
		{"lone high surrogate", "/api/v1/deployments", `{"model":"a\ud800b","replicas":["http://127.0.0.1:1"]}`, `\\ud800 is half`},
		{"lone low surrogate", "/api/v1/deployments", `{"model":"a\udc00","replicas":["http://127.0.0.1:1"]}`, `\\udc00 is half`},
		{"high then not low", "/api/v1/deployments", `{"model":"\ud83d\u0041","replicas":["http://127.0.0.1:1"]}`, `\\ud83d is half`},
		{"not UTF-8", "/api/v1/deployments", "{\"model\":\"a\xffb\",\"replicas\":[\"http://127.0.0.1:1\"]}", `not UTF-8`},
		{"unknown field", "/api/v1/rollback", `{"too":"blue"}`, `unknown field \"too\"`},
		{"a pair", "/api/v1/deployments", `{"model":"a\ud83d\ude00","replicas":["http://127.0.0.1:1"]}`, ""},
		{"an escaped backslash before u", "/api/v1/deployments", `{"model":"a\\ud800","replicas":["http://127.0.0.1:1"]}`, ""},
		{"exact names", "/api/v1/rollback", `{"to":"blue","expected_revision":3}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, srv := newRecordingAdmin(t)
			c, br := serveAdmin(t, srv)
			req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", tc.path, stubToken, len(tc.body), tc.body)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			n := ctrl.calls()
			if tc.want == "" {
				if resp.StatusCode/100 != 2 || n != 1 {
					t.Fatalf("status %d, %d actions: %s", resp.StatusCode, n, body)
				}
				return
			}
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) || !strings.Contains(string(body), `"bad_json"`) {
				t.Fatalf("status %d: %s; want 400 bad_json with %s", resp.StatusCode, body, tc.want)
			}
			if n != 0 {
				t.Fatalf("%d actions on a refused body", n)
			}
		})
	}
}

// TestCheckStrictNested: names are checked at every depth, and a value
// decoded by its own UnmarshalJSON is only checked for duplicates.
func TestCheckStrictNested(t *testing.T) {
	type inner struct {
		Name string `json:"name"`
	}
	type Embedded struct {
		Deep string `json:"deep"`
	}
	type Tagged struct {
		X string `json:"x"`
	}
	type outer struct {
		Embedded
		Tagged `json:"tagged"`
		Items  []inner          `json:"items"`
		Map    map[string]inner `json:"map"`
		Raw    json.RawMessage  `json:"raw"`
		Ptr    *inner           `json:"ptr"`
		Any    map[string]any   `json:"any"`
		Skip   string           `json:"-"`
		Plain  string
	}
	typ := reflect.TypeFor[*outer]()
	for _, tc := range []struct {
		in, want string
	}{
		{`{"items":[{"name":"a"},{"Name":"b"}]}`, `"items[1].Name"`},
		{`{"map":{"k":{"NAME":"b"}}}`, `"map.k.NAME"`},
		{`{"ptr":{"name":"a","name":"b"}}`, `"ptr.name" given twice`},
		{`{"raw":{"Anything":1,"anything":2}}`, ""},
		{`{"raw":{"x":1,"x":2}}`, `"raw.x" given twice`},
		{`{"any":{"A":[{"b":1,"b":2}]}}`, `"any.A[0].b" given twice`},
		{`{"plain":"x"}`, `did you mean "Plain"`},
		{`{"Plain":"x","items":[],"map":{},"ptr":null}`, ""},
		{`{"deep":"promoted"}`, ""},
		{`{"Deep":"promoted"}`, `did you mean "deep"`},
		{`{"tagged":{"x":"a"}}`, ""},
		{`{"tagged":{"X":"a"}}`, `"tagged.X"`},
		{`{"x":"not promoted from a tagged embed"}`, ""}, // DisallowUnknownFields refuses it after

	} {
		err := checkStrict([]byte(tc.in), typ)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %s", tc.in, err, tc.want)
		}
	}
}

// FuzzCheckSurrogates: for one JSON string, checkSurrogates refuses
// exactly what encoding/json decodes with a U+FFFD that the text did not
// hold (a literal U+FFFD or its escape, which stay allowed).
func FuzzCheckSurrogates(f *testing.F) {
	for _, s := range []string{`"a"`, `"\ud800"`, `"\ud83d\ude00"`, `"\\ud800"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `"\ufffd"`, `"x\ud800\ud800\udc00"`, `"\ud800\\udc00"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var s string
		if !utf8.ValidString(raw) || strings.ContainsRune(raw, utf8.RuneError) || json.Unmarshal([]byte(raw), &s) != nil {
			return
		}
		if strings.Contains(strings.ToLower(raw), `\ufffd`) {
			return // the escape of U+FFFD itself: its decoding proves nothing
		}
		replaced := strings.ContainsRune(s, utf8.RuneError)
		if err := checkSurrogates([]byte(raw)); (err != nil) != replaced {
			t.Fatalf("%q: checkSurrogates %v, but encoding/json's decoding %q replaced something: %v", raw, err, s, replaced)
		}
	})
}
