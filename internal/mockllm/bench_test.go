package mockllm

import (
	"net/http"
	"strings"
	"testing"
)

// discardWriter is a cheap http.ResponseWriter (and http.Flusher) for benchmarks.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

// BenchmarkServeHTTP measures the handler alone, without sockets.
func BenchmarkServeHTTP(b *testing.B) {
	s, err := New(Config{Model: testModel})
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", chatBody(testModel, "hello there, how are you?", "")},
		{"chat stream", "/v1/chat/completions", chatBody(testModel, "hello there, how are you?", `,"stream":true`)},
		{"text", "/v1/completions", textBody(testModel, "Once upon a time", "")},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					r, _ := http.NewRequest(http.MethodPost, bb.path, strings.NewReader(bb.body))
					r.Header.Set("Content-Type", "application/json")
					clear(w.h)
					s.ServeHTTP(w, r)
				}
			})
		})
	}
}
