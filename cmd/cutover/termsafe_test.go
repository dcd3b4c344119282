package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTermSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, tab\tand\nnewline", "plain text, tab\tand\nnewline"},
		{"\x1b]0;owned\a\x1b[2Jall good", `\x1b]0;owned\x07\x1b[2Jall good`},
		{"nul\x00 del\x7f c1\u009b", `nul\x00 del\x7f c1\x9b`},
		{"bad utf8 \xff", `bad utf8 \xff`},
		{"é 漢字 🙂", "é 漢字 🙂"},
		// Bidirectional overrides reorder what the terminal shows (a hook's
		// output or an X-Cutover-Actor could make "rollback" read as
		// something else): escaped as well.
		{"actor \u202ekcabllor\u202c \u2066x\u2069", `actor \u202ekcabllor\u202c \u2066x\u2069`},
	} {
		if got := termSafe(tc.in); got != tc.want {
			t.Errorf("termSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStatusEscapesServerText: text the server relays (here a reason that
// a hook's output could have written) reaches the terminal without its
// control sequences, in text mode and in errors.
func TestStatusEscapesServerText(t *testing.T) {
	evil, _ := json.Marshal("\x1b]0;owned\a\x1b[2J\x1b[1;1Hall good")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/promote" {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"error":{"message":%s,"type":"invalid_request_error","code":"hook_failed"}}`, evil)
			return
		}
		fmt.Fprintf(w, `{"live":"blue","revision":3,"pools":{},"deployment":{"id":"d-1","pool":"green","model":"m2","phase":"failed","reason":%s}}`, evil)
	}))
	defer srv.Close()
	env := []string{"CUTOVER_ADMIN_TOKEN=x"}
	for _, args := range [][]string{{"status"}, {"promote"}} {
		_, stdout, stderr := runCLI(t, env, append(args, "--admin", srv.URL)...)
		if out := stdout + stderr; strings.ContainsRune(out, '\x1b') || strings.ContainsRune(out, '\a') || !strings.Contains(out, `\x1b[2J`) {
			t.Errorf("cutover %s: output %q, want the sequences escaped", args[0], out)
		}
	}
}
