package shadow

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// TestFramesRoundTrip: what one end writes the other reads back, field for
// field, and a stream cut inside a frame is an error, at its end io.EOF.
func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fw := frameWriter{w: bufio.NewWriter(&buf)}
	cfg := helperConfig{Concurrency: 16, Timeout: 2 * time.Minute}
	copies := []*copyRequest{
		{ID: 1, URL: "http://127.0.0.1:8000/prefix", Path: "/v1/chat/completions", Authorization: "Bearer k", Body: []byte(`{"model":"m"}`), Deterministic: true},
		{ID: 1 << 40, URL: "http://h", Path: "/v1/completions", Body: []byte{}},
	}
	results := []helperResult{
		{ID: 7, Result: Result{Status: 200, TTFT: time.Millisecond, Duration: time.Second, Tokens: 16, Text: "héllo", Truncated: true}},
		{ID: 8, Result: Result{Status: -1, Err: "dial tcp: refused", StreamError: true, Duration: -5}},
	}
	if err := fw.config(cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		if err := fw.copy(c); err != nil {
			t.Fatal(err)
		}
	}
	for i := range results {
		if err := fw.result(&results[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.w.Flush(); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(whole))}
	if got, err := fr.config(); err != nil || got != cfg {
		t.Fatalf("config %+v, %v; want %+v", got, err, cfg)
	}
	for _, want := range copies {
		if got, err := fr.copy(); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("copy %+v, %v; want %+v", got, err, want)
		}
	}
	for _, want := range results {
		if got, err := fr.result(); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("result %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := fr.result(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	cut := frameReader{r: bufio.NewReader(bytes.NewReader(whole[:len(whole)-3]))}
	_, _ = cut.config()
	_, _ = cut.copy()
	_, _ = cut.copy()
	_, _ = cut.result()
	if _, err := cut.result(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a frame cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

// FuzzFrames: any input decodes to results or an error, never a panic or
// an allocation past maxField; what decodes re-encodes to the same frame.
func FuzzFrames(f *testing.F) {
	var buf bytes.Buffer
	fw := frameWriter{w: bufio.NewWriter(&buf)}
	_ = fw.result(&helperResult{ID: 3, Result: Result{Status: 200, Text: "x", Err: "e"}})
	_ = fw.w.Flush()
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(data))}
		for range 64 {
			r, err := fr.result()
			if err != nil {
				return
			}
			var out bytes.Buffer
			w := frameWriter{w: bufio.NewWriter(&out)}
			_ = w.result(&r)
			_ = w.w.Flush()
			back, err := (&frameReader{r: bufio.NewReader(&out)}).result()
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("re-encoded %+v read back as %+v, %v", r, back, err)
			}
		}
	})
}

// TestFramesCancel: the gateway's frames read with next are copies and
// cancels in the order written; a cancel of copy 0 is refused.
func TestFramesCancel(t *testing.T) {
	var buf bytes.Buffer
	fw := frameWriter{w: bufio.NewWriter(&buf)}
	c := &copyRequest{ID: 3, URL: "http://h", Path: "/v1/completions", Body: []byte(`{}`)}
	_ = fw.copy(c)
	_ = fw.cancel(3)
	_ = fw.cancel(0)
	if err := fw.w.Flush(); err != nil {
		t.Fatal(err)
	}
	fr := frameReader{r: bufio.NewReader(&buf)}
	if got, id, err := fr.next(); err != nil || id != 0 || !reflect.DeepEqual(got, c) {
		t.Fatalf("first frame: %+v, cancel %d, %v; want the copy", got, id, err)
	}
	if got, id, err := fr.next(); err != nil || id != 3 || got != nil {
		t.Fatalf("second frame: %+v, cancel %d, %v; want a cancel of 3", got, id, err)
	}
	if _, _, err := fr.next(); err == nil {
		t.Fatal("a cancel of copy 0 was read as valid")
	}
}
