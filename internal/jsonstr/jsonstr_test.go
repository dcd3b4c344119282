package jsonstr

import (
	"encoding/json"
	"testing"
)

// check fails unless Append(s) is JSON that decodes to what encoding/json's
// own encoding of s decodes to.
func check(t *testing.T, s string) {
	t.Helper()
	ours := Append(nil, s)
	var got string
	if err := json.Unmarshal(ours, &got); err != nil {
		t.Fatalf("invalid JSON %s for %q: %v", ours, s, err)
	}
	std, _ := json.Marshal(s)
	var want string
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%q encodes to %s, decoding to %q; encoding/json gives %q", s, ours, got, want)
	}
}

func TestAppend(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rcr", "gpt\x01", "a\vb", "del\x7f",
		"bad\xffutf8", "x\U000e0001", "é and 漢字", "sep\u2028\u2029", "<html>&", "\x00", "trailing\xe2\x82",
	} {
		check(t, s)
	}
	if got := string(Append([]byte("x="), "a\"b")); got != `x="a\"b"` {
		t.Errorf("Append to a prefix: %s", got)
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uo\te`, "ctl\x00\x1f\n\r\t", "bad\xff\xfeutf8", "sep\u2028\u2029", "é€😀", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(check)
}
