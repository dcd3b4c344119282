// Package agent is cutover's replica supervisor for one GPU server: it
// starts model-server replicas on free GPUs, stops them, puts them to sleep
// and wakes them through vLLM's sleep-mode endpoints, and reports them over
// an HTTP API protected by a bearer token. It survives its own restart by
// re-adopting the replicas recorded in its state file.
package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/secret"
)

// Config is agent.yaml.
type Config struct {
	// Listen is the API's address, e.g. 0.0.0.0:9090. Required.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token every API call must carry. Required.
	TokenFile string `yaml:"token_file"`
	// GPUs is "auto" (count them with nvidia-smi) or a number (tests,
	// CPU-only boxes). Empty means auto.
	GPUs string `yaml:"gpus"`
	// Ports is the range replicas listen on, "FIRST-LAST". Required.
	Ports string `yaml:"ports"`
	// Command is the replica's argv template: {model}, {port}, {gpus}
	// (comma-separated indexes) and {gpus_count} are replaced. Required.
	Command []string `yaml:"command"`
	// Env is added to the agent's environment for every replica (the same
	// placeholders are replaced in the values); CUDA_VISIBLE_DEVICES is set
	// from the GPU ledger and cannot be overridden here.
	Env map[string]string `yaml:"env"`
	// LogDir receives each replica's stdout and stderr, one file per
	// replica. Required.
	LogDir string `yaml:"log_dir"`
	// LogMaxMB rotates a replica's log once it is larger than this many
	// MiB: it is copied to FILE.1 (replacing the previous one) and
	// truncated; the replica keeps appending to it. Zero means 100.
	LogMaxMB int `yaml:"log_max_mb"`
	// StateFile records the replicas so that a restarted agent re-adopts
	// them. Empty means LogDir/agent-state.json.
	StateFile string `yaml:"state_file"`
	// StopGrace is how long a stop waits after SIGTERM before SIGKILL.
	// Zero means 30s.
	StopGrace time.Duration `yaml:"stop_grace"`

	// Derived by Validate.
	gpuCount           int
	portFirst, portEnd int // inclusive range
	token              string
}

// FieldError names a bad key of agent.yaml.
type FieldError struct {
	Key string
	Msg string
}

// Error implements error.
func (e *FieldError) Error() string { return "agent config: " + e.Key + ": " + e.Msg }

// LoadConfig reads path, applies defaults, validates and reads the token
// file. Errors naming a key are *FieldError.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	var c Config
	if errs := config.DecodeStrict(b, &c); len(errs) > 0 {
		// Every problem at once, each with its line, as cutover.yaml's.
		first, more := errs[0], make([]string, 0, len(errs)-1)
		for _, e := range errs[1:] {
			more = append(more, fmt.Sprintf("%s (line %d): %s", e.Key, e.Line, e.Msg))
		}
		msg := first.Msg
		if first.Line > 0 {
			msg = fmt.Sprintf("(line %d) %s", first.Line, msg)
		}
		if len(more) > 0 {
			msg += "; also " + strings.Join(more, "; ")
		}
		return nil, &FieldError{Key: first.Key, Msg: msg}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate applies defaults, checks every key and reads the token file.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return &FieldError{"listen", "required, e.g. 0.0.0.0:9090"}
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		return &FieldError{"listen", fmt.Sprintf("%q is not host:port, e.g. 0.0.0.0:9090", c.Listen)}
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return &FieldError{"listen", fmt.Sprintf("%q: the port must be a number from 0 to 65535", c.Listen)}
	}
	if c.TokenFile == "" {
		return &FieldError{"token_file", "required: the API needs a bearer token"}
	}
	tok, err := secret.ReadFile(c.TokenFile)
	if err != nil {
		return &FieldError{"token_file", err.Error()}
	}
	if tok == "" {
		return &FieldError{"token_file", c.TokenFile + " is empty"}
	}
	c.token = tok
	switch c.GPUs {
	case "", "auto":
		n, err := countGPUs()
		if err != nil {
			return &FieldError{"gpus", "auto: " + err.Error() + " (set a number on a box without nvidia-smi)"}
		}
		c.gpuCount = n
	default:
		n, err := strconv.Atoi(c.GPUs)
		if err != nil || n < 1 || n > 1024 {
			return &FieldError{"gpus", fmt.Sprintf("%q: want auto or a number from 1", c.GPUs)}
		}
		c.gpuCount = n
	}
	first, last, ok := strings.Cut(c.Ports, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(first))
	b, err2 := strconv.Atoi(strings.TrimSpace(last))
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return &FieldError{"ports", fmt.Sprintf("%q: want FIRST-LAST, e.g. 8100-8199", c.Ports)}
	}
	c.portFirst, c.portEnd = a, b
	if len(c.Command) == 0 || c.Command[0] == "" {
		return &FieldError{"command", "required: the replica's argv, e.g. [vllm, serve, \"{model}\", --port, \"{port}\"]"}
	}
	if !strings.Contains(strings.Join(c.Command, " "), "{port}") {
		return &FieldError{"command", "must contain {port}: the agent chooses each replica's port"}
	}
	for k := range c.Env {
		if k == "" || strings.Contains(k, "=") {
			return &FieldError{"env", fmt.Sprintf("bad variable name %q", k)}
		}
		if k == "CUDA_VISIBLE_DEVICES" {
			return &FieldError{"env.CUDA_VISIBLE_DEVICES", "set by the agent from its GPU ledger"}
		}
	}
	if c.LogDir == "" {
		return &FieldError{"log_dir", "required"}
	}
	if c.StateFile == "" {
		c.StateFile = filepath.Join(c.LogDir, "agent-state.json")
	}
	if c.LogMaxMB < 0 {
		return &FieldError{"log_max_mb", "must not be negative"}
	}
	if c.LogMaxMB == 0 {
		c.LogMaxMB = 100
	}
	if c.StopGrace < 0 {
		return &FieldError{"stop_grace", "must not be negative"}
	}
	if c.StopGrace == 0 {
		c.StopGrace = 30 * time.Second
	}
	return nil
}

// countGPUs asks nvidia-smi how many GPUs the box has.
func countGPUs() (int, error) {
	out, err := exec.Command("nvidia-smi", "--query-gpu=index", "--format=csv,noheader").Output()
	if err != nil {
		return 0, fmt.Errorf("nvidia-smi: %w", err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	if n == 0 {
		return 0, errors.New("nvidia-smi lists no GPU")
	}
	return n, nil
}

// expand replaces the template's placeholders.
func expand(s, model string, port int, gpus []int) string {
	ids := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
	}
	return strings.NewReplacer("{model}", model, "{port}", strconv.Itoa(port),
		"{gpus}", strings.Join(ids, ","), "{gpus_count}", strconv.Itoa(len(gpus))).Replace(s)
}
