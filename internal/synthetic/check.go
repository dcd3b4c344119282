package synthetic

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// evaluate checks res against e and returns the reasons it fails, none when
// it passes. notes are problems found while reading the answer. When no
// answer arrived or its status is not the expected one, that is the only
// reason: the other expectations are about an answer that is not there.
func evaluate(e *Expect, res *Result, notes []string) []string {
	if res.TransportError != "" {
		return []string{"request failed: " + res.TransportError}
	}
	if want := cmp.Or(e.Status, http.StatusOK); res.Status != want {
		msg := fmt.Sprintf("expected status %d, got %d", want, res.Status)
		if res.ErrorMessage != "" {
			msg += ": " + res.ErrorMessage
		}
		return []string{msg}
	}
	fails := append([]string(nil), notes...)
	add := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	if res.StreamError {
		add("error inside the stream: %s", res.ErrorMessage)
	}
	if e.Model != "" && res.Model != e.Model {
		add("expected model %q, got %q", e.Model, res.Model)
	}
	for _, s := range e.Contains {
		if !strings.Contains(res.Text, s) {
			add("text does not contain %q", s)
		}
	}
	lower := strings.ToLower(res.Text)
	for _, s := range e.ContainsI {
		if !strings.Contains(lower, strings.ToLower(s)) {
			add("text does not contain %q (ignoring case)", s)
		}
	}
	for _, s := range e.NotContains {
		if strings.Contains(res.Text, s) {
			add("text contains %q", s)
		}
	}
	if e.Regex != nil && !e.Regex.MatchString(res.Text) {
		add("text does not match regex `%s`", e.Regex.String())
	}
	if e.JSON {
		var v any
		if err := json.Unmarshal([]byte(res.Text), &v); err != nil {
			add("text is not JSON: %v", err)
		}
	}
	// [DONE] ends a stream; an error status comes back as a JSON body
	// even to a streamed request, and only its status is checked.
	if e.Done && res.Stream && res.Status/100 == 2 && !res.Done {
		add("stream ended without [DONE]")
	}
	switch {
	case e.MaxTTFT == 0:
	case res.TTFT == 0:
		add("no token arrived (max_ttft_ms %d)", e.MaxTTFT.Milliseconds())
	case res.TTFT > e.MaxTTFT:
		add("time to first token %s > %s", ms(res.TTFT), ms(e.MaxTTFT))
	}
	if e.MaxTotal > 0 && res.Duration > e.MaxTotal {
		add("total time %s > %s", ms(res.Duration), ms(e.MaxTotal))
	}
	if res.Tokens < e.MinTokens {
		add("got %d output tokens, expected at least %d", res.Tokens, e.MinTokens)
	}
	return fails
}

// ms renders d rounded to the millisecond (to the microsecond below 1ms).
func ms(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
