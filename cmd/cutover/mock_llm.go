package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// mockLLMShutdownTimeout bounds the graceful shutdown of mock-llm; streams
// still open after it are cut.
const mockLLMShutdownTimeout = 5 * time.Second

// mockLLMFlags maps mockllm.Config field names to the flags that set them,
// so that a *mockllm.FieldError can name the flag.
var mockLLMFlags = map[string]string{
	"Model":            "model",
	"TTFT":             "ttft",
	"ITL":              "itl",
	"Tokens":           "tokens",
	"MaxConcurrent":    "max-concurrent",
	"ErrorRate":        "error-rate",
	"StreamErrorRate":  "stream-error-rate",
	"ExtraLatency":     "extra-latency",
	"StartupPeriod":    "startup-period",
	"MaxModelLen":      "max-model-len",
	"KVBlocks":         "kv-blocks",
	"BlockSize":        "block-size",
	"PrefillPerToken":  "prefill-per-token",
	"ITLPerSeq":        "itl-per-seq",
	"MaxBatchedTokens": "max-num-batched-tokens",
	"LoRAModules":      "lora-modules",
}

// newMockLLMCmd returns the "mock-llm" command: a simulated vLLM replica.
func newMockLLMCmd(g *globalFlags) *cobra.Command {
	var (
		cfg       mockllm.Config
		listen    string
		keepAlive time.Duration
	)
	cmd := &cobra.Command{
		Use:   "mock-llm",
		Short: "Serve a simulated vLLM OpenAI-compatible API",
		Long: `Serve a simulated vLLM replica: /health, /v1/models, /v1/chat/completions,
/v1/completions (streamed or not) and /metrics, shaped like vLLM's, with
deterministic answers, configurable latency and injectable faults.

Faults can be changed while it runs through the simulator-only endpoint
/mock/faults, e.g.
  curl -d '{"fail_health":true,"error_rate":0.05,"ttft_ms":100}' http://127.0.0.1:8000/mock/faults`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.Sleep.DevMode = mockSleepDevMode()
			for i, m := range cfg.LoRAModules { // name=path, as vLLM's: the simulator needs the name
				cfg.LoRAModules[i], _, _ = strings.Cut(m, "=")
			}
			return runMockLLM(cmd.Context(), log, listen, cfg, keepAlive)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8000", "address to listen on")
	f.DurationVar(&keepAlive, "keep-alive-timeout", 5*time.Second, "close client connections idle this long (vLLM's uvicorn: 5s)")
	f.StringVar(&cfg.Model, "model", "", "served model id (required)")
	f.DurationVar(&cfg.TTFT, "ttft", 0, "time to first token")
	f.DurationVar(&cfg.ITL, "itl", 0, "inter-token latency")
	f.IntVar(&cfg.Tokens, "tokens", mockllm.DefaultTokens, "tokens per answer when max_tokens does not cap it")
	f.IntVar(&cfg.MaxConcurrent, "max-concurrent", 0, "sequences generated at once, more wait in a queue (0: unlimited)")
	f.Float64Var(&cfg.ErrorRate, "error-rate", 0, "fraction of completion requests answered 500 (0..1)")
	f.Float64Var(&cfg.StreamErrorRate, "stream-error-rate", 0, "fraction of streams that break with an in-stream error (0..1)")
	f.DurationVar(&cfg.ExtraLatency, "extra-latency", 0, "latency added to every /v1/ request")
	f.DurationVar(&cfg.StartupPeriod, "startup-period", 0, "answer 503 on every endpoint for this long after start, like a loading model")
	f.BoolVar(&cfg.FailHealth, "fail-health", false, "answer 503 on /health")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault-injection draws")
	f.StringVar(&cfg.AnswerAs, "answer-as", "", "answer as this model id would (same weights, new served id)")
	f.StringSliceVar(&cfg.LoRAModules, "lora-modules", nil, "LoRA adapters served beside --model, as vLLM's --lora-modules name=path (listed in /v1/models; requests may name them)")
	f.StringVar(&cfg.APIKey, "api-key", "", "require Authorization: Bearer KEY on /v1/* (401 otherwise), like vLLM's --api-key")
	f.IntVar(&cfg.MaxModelLen, "max-model-len", mockllm.DefaultMaxModelLen, "context length reported and enforced")
	f.IntVar(&cfg.MaxConcurrent, "max-num-seqs", 0, "vLLM's name for --max-concurrent: the running batch, more wait")
	f.IntVar(&cfg.KVBlocks, "kv-blocks", 0, "KV-cache budget in blocks; enables a prefix cache with LRU eviction (0: none)")
	f.IntVar(&cfg.BlockSize, "block-size", mockllm.DefaultBlockSize, "tokens (words) per KV block")
	f.DurationVar(&cfg.PrefillPerToken, "prefill-per-token", 0, "added to --ttft for every prompt token not in the prefix cache")
	f.DurationVar(&cfg.ITLPerSeq, "itl-per-seq", 0, "added to --itl for every other sequence in the running batch")
	f.IntVar(&cfg.MaxBatchedTokens, "max-num-batched-tokens", 0, "one compute per replica, in steps of this many prefill tokens: prefills run one after another and decoding waits for the step in progress (0: each prefill on its own)")
	addMockSleepFlags(cmd, &cfg.Sleep)
	return cmd
}

// runMockLLM serves a simulated replica on listen until ctx ends, then shuts
// down gracefully.
func runMockLLM(ctx context.Context, log *slog.Logger, listen string, cfg mockllm.Config, keepAlive time.Duration) error {
	srv, err := mockllm.New(cfg)
	if err != nil {
		var fe *mockllm.FieldError
		if errors.As(err, &fe) && mockLLMFlags[fe.Field] != "" {
			// Keep the *FieldError in the chain: main maps it to a usage error.
			return fmt.Errorf("invalid --%s: %w", mockLLMFlags[fe.Field], err)
		}
		return fmt.Errorf("mock-llm: %w", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("mock-llm: --listen %s: %w", listen, err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       keepAlive, // like vLLM's uvicorn, which drops idle connections after 5 s
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("mock-llm listening", "addr", ln.Addr().String(), "model", cfg.Model)

	select {
	case err := <-served:
		return fmt.Errorf("mock-llm: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("mock-llm shutting down", "timeout", mockLLMShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), mockLLMShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("mock-llm: graceful shutdown incomplete, closing open connections", "err", err)
		_ = hs.Close() // cancels the remaining requests' contexts
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mock-llm: serving on %s: %w", ln.Addr(), err)
	}
	log.Info("mock-llm stopped")
	return nil
}
