package pool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Scraper reads each replica's engine metrics (vLLM's or SGLang's
// Prometheus /metrics) every Interval and publishes them with
// Replica.SetEngineLoad, for the llm balancer. A replica whose scrape
// fails keeps its last metrics, which go stale.
type Scraper struct {
	// Client makes the requests. Nil means http.DefaultClient.
	Client *http.Client
	// Interval between rounds; 0 means DefaultMetricsInterval.
	Interval time.Duration
	// Timeout of one scrape; 0 means Interval.
	Timeout time.Duration
	// Targets returns the replicas to scrape, called once per round.
	Targets func() []Target
	// Logger receives a line when a replica's scrapes start or stop
	// failing. Nil means slog.Default().
	Logger *slog.Logger

	mu     sync.Mutex
	failed map[*Replica]bool
}

// Run scrapes every Interval until ctx is done.
func (s *Scraper) Run(ctx context.Context) {
	t := time.NewTicker(s.interval())
	defer t.Stop()
	for {
		s.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Scraper) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return DefaultMetricsInterval
}

// Tick scrapes every target once, concurrently.
func (s *Scraper) Tick(ctx context.Context) {
	targets := s.Targets()
	seen := make([]*Replica, 0, len(targets))
	var wg sync.WaitGroup
	for _, t := range targets {
		if slices.Contains(seen, t.Replica) {
			continue
		}
		seen = append(seen, t.Replica)
		wg.Go(func() {
			err := s.Scrape(ctx, t.Replica)
			if ctx.Err() != nil {
				return
			}
			s.note(t.Replica, err)
		})
	}
	wg.Wait()
}

// note logs changes between failing and working scrapes.
func (s *Scraper) note(r *Replica, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = map[*Replica]bool{}
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	switch {
	case err != nil && !s.failed[r]:
		s.failed[r] = true
		log.Warn("replica metrics unavailable; it counts as saturated for the llm balancer", "replica", r.Name, "error", err.Error())
	case err == nil && s.failed[r]:
		delete(s.failed, r)
		log.Info("replica metrics available again", "replica", r.Name)
	}
}

// Scrape reads r's /metrics once and publishes them.
func (s *Scraper) Scrape(ctx context.Context, r *Replica) error {
	inflight := r.InFlight()
	e, err := s.Read(ctx, r)
	if err != nil {
		return err
	}
	// A request the gateway sent while the metrics were read may be in
	// the engine's numbers: count it as the gateway's (the larger of the
	// two counts), or the balancer would count it twice until the next
	// scrape. One that finished meanwhile is the balancer's to bound.
	e.InFlight = max(inflight, r.InFlight())
	e.learn(r.EngineLoad())
	r.SetEngineLoad(e)
	return nil
}

// Read reads r's /metrics once and returns them (At set), publishing
// nothing.
func (s *Scraper) Read(ctx context.Context, r *Replica) (*EngineLoad, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = s.interval()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := r.Name + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", url, err)
	}
	r.SetAuthorization(req.Header)
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	e, err := ParseEngineMetrics(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	e.At = time.Now()
	return e, nil
}

// ParseEngineMetrics reads the load metrics of vLLM (or SGLang) from a
// Prometheus text exposition, summing over label sets (several models
// on one engine). It fails when none of the queue metrics is present:
// such a replica is not an engine the llm balancer understands.
func ParseEngineMetrics(r io.Reader) (*EngineLoad, error) {
	e := &EngineLoad{}
	var kvNew, kvOld, kvSG float64
	var haveNew, haveOld, haveQueue bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name := line[:end]
		var field *float64
		switch string(name) {
		case "vllm:num_requests_waiting", "sglang:num_queue_reqs":
			field, haveQueue = &e.Waiting, true
		case "vllm:num_requests_running", "sglang:num_running_reqs":
			field, haveQueue = &e.Running, true
		case "vllm:kv_cache_usage_perc":
			field, haveNew = &kvNew, true
		case "vllm:gpu_cache_usage_perc":
			field, haveOld = &kvOld, true
		case "sglang:token_usage":
			field = &kvSG
		case "vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits":
			field = &e.PrefixHits
		case "vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries":
			field = &e.PrefixQueries
		default:
			continue
		}
		rest := line[end:]
		if rest[0] == '{' {
			j := bytes.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil || v != v {
			continue
		}
		*field += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	if !haveQueue {
		return nil, fmt.Errorf("no vllm:num_requests_waiting or vllm:num_requests_running in the metrics")
	}
	switch {
	case haveNew:
		e.KV = kvNew
	case haveOld:
		e.KV = kvOld
	default:
		e.KV = kvSG
	}
	e.KV = min(max(e.KV, 0), 1)
	return e, nil
}
