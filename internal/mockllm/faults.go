package mockllm

// Runtime fault control: Set* methods for Go callers and the simulator-only
// /mock/faults endpoint for everyone else.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"time"
)

// faults is the part of the behaviour that may change while the server runs.
// Every field is read once per request, so a change applies to requests that
// start after it.
type faults struct {
	failHealth      atomic.Bool
	errorRate       atomic.Uint64 // math.Float64bits of a rate in [0, 1]
	streamErrorRate atomic.Uint64 // math.Float64bits of a rate in [0, 1]
	extraLatency    atomic.Int64  // time.Duration, >= 0
	ttft            atomic.Int64  // time.Duration, >= 0
	itl             atomic.Int64  // time.Duration, >= 0
}

// SetFailHealth makes /health answer 503 (true) or 200 (false).
func (s *Server) SetFailHealth(fail bool) { s.faults.failHealth.Store(fail) }

// SetErrorRate sets the fraction of completion requests answered 500.
// Values outside [0, 1] are clamped; NaN means 0.
func (s *Server) SetErrorRate(rate float64) {
	s.faults.errorRate.Store(math.Float64bits(clampRate(rate)))
}

// SetStreamErrorRate sets the fraction of streamed completion requests that
// end with an in-stream error. Values outside [0, 1] are clamped; NaN means 0.
func (s *Server) SetStreamErrorRate(rate float64) {
	s.faults.streamErrorRate.Store(math.Float64bits(clampRate(rate)))
}

// SetExtraLatency sets the delay added to every /v1/ request; negative means 0.
func (s *Server) SetExtraLatency(d time.Duration) { s.faults.extraLatency.Store(int64(max(d, 0))) }

// SetTTFT sets the delay before the first token; negative means 0.
func (s *Server) SetTTFT(d time.Duration) { s.faults.ttft.Store(int64(max(d, 0))) }

// SetITL sets the delay between tokens; negative means 0.
func (s *Server) SetITL(d time.Duration) { s.faults.itl.Store(int64(max(d, 0))) }

func (f *faults) errRate() float64       { return math.Float64frombits(f.errorRate.Load()) }
func (f *faults) streamErrRate() float64 { return math.Float64frombits(f.streamErrorRate.Load()) }

// faultsBody is the JSON of /mock/faults. In a POST every field is optional
// and only the fields present change; a GET returns all of them.
type faultsBody struct {
	FailHealth      *bool    `json:"fail_health,omitempty"`
	ErrorRate       *float64 `json:"error_rate,omitempty"`
	StreamErrorRate *float64 `json:"stream_error_rate,omitempty"`
	ExtraLatencyMS  *float64 `json:"extra_latency_ms,omitempty"`
	TTFTMS          *float64 `json:"ttft_ms,omitempty"`
	ITLMS           *float64 `json:"itl_ms,omitempty"`
}

// faultsSnapshot returns the current faults, every field set.
func (s *Server) faultsSnapshot() faultsBody {
	ms := func(v int64) *float64 { f := float64(v) / float64(time.Millisecond); return &f }
	fail := s.faults.failHealth.Load()
	er, ser := s.faults.errRate(), s.faults.streamErrRate()
	return faultsBody{
		FailHealth:      &fail,
		ErrorRate:       &er,
		StreamErrorRate: &ser,
		ExtraLatencyMS:  ms(s.faults.extraLatency.Load()),
		TTFTMS:          ms(s.faults.ttft.Load()),
		ITLMS:           ms(s.faults.itl.Load()),
	}
}

// validate checks every present field before any is applied.
func (b *faultsBody) validate() error {
	type field struct {
		name string
		v    *float64
	}
	for _, f := range []field{{"error_rate", b.ErrorRate}, {"stream_error_rate", b.StreamErrorRate}} {
		if f.v != nil && !validRate(*f.v) {
			return fmt.Errorf("%s is %v: must be between 0 and 1", f.name, *f.v)
		}
	}
	const maxMS = float64(math.MaxInt64 / int64(time.Millisecond))
	for _, f := range []field{{"extra_latency_ms", b.ExtraLatencyMS}, {"ttft_ms", b.TTFTMS}, {"itl_ms", b.ITLMS}} {
		if f.v != nil && !(*f.v >= 0 && *f.v <= maxMS) {
			return fmt.Errorf("%s is %v: must be a non-negative number of milliseconds", f.name, *f.v)
		}
	}
	return nil
}

// apply sets every present field on s.
func (b *faultsBody) apply(s *Server) {
	dur := func(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
	if b.FailHealth != nil {
		s.SetFailHealth(*b.FailHealth)
	}
	if b.ErrorRate != nil {
		s.SetErrorRate(*b.ErrorRate)
	}
	if b.StreamErrorRate != nil {
		s.SetStreamErrorRate(*b.StreamErrorRate)
	}
	if b.ExtraLatencyMS != nil {
		s.SetExtraLatency(dur(*b.ExtraLatencyMS))
	}
	if b.TTFTMS != nil {
		s.SetTTFT(dur(*b.TTFTMS))
	}
	if b.ITLMS != nil {
		s.SetITL(dur(*b.ITLMS))
	}
}

// decodeFaults reads one JSON object into body: unknown fields, data after
// the object and explicit nulls (which would read as "not given") are
// errors.
func decodeFaults(r io.Reader, body *faultsBody) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(body); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	for k, v := range fields {
		if string(v) == "null" {
			return fmt.Errorf("%s: null is not a value; leave the field out to keep it", k)
		}
	}
	return nil
}

// serveFaults handles /mock/faults, an endpoint that exists only in the
// simulator (vLLM has nothing like it). GET returns the current faults;
// POST changes the fields present in its body and returns the result:
//
//	{"fail_health":true,"error_rate":0.05,"stream_error_rate":0,
//	 "extra_latency_ms":0,"ttft_ms":100,"itl_ms":10}
//
// It answers even during the startup period, so faults can be set up before
// the replica turns ready.
func (s *Server) serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		var body faultsBody
		err := decodeFaults(http.MaxBytesReader(w, r.Body, 1<<16), &body)
		if err == nil {
			err = body.validate()
		}
		if err != nil {
			writeError(w, &apiError{status: http.StatusBadRequest, typ: typeBadRequest,
				message: fmt.Sprintf("invalid /mock/faults body: %v", err)})
			return
		}
		body.apply(s)
	default:
		writeMethodNotAllowed(w, "GET, POST")
		return
	}
	out, err := json.Marshal(s.faultsSnapshot())
	if err != nil { // cannot happen: only bools and finite floats
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: typeInternal, message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, out)
}
