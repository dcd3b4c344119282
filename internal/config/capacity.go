package config

import (
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// Agent is one `cutover agent` the controller may ask for replicas.
type Agent struct {
	// Name identifies the agent in status, logs and the state store:
	// letters, digits, '-', '_' and '.', unique among agents. Required.
	Name string `yaml:"name"`
	// URL is the agent's API, http:// or https://. Required. Replicas it
	// starts are reached on this URL's host at the port the agent reports.
	URL string `yaml:"url"`
	// TokenFile holds the agent's bearer token (one line). Required.
	TokenFile string `yaml:"token_file"`
}

// Launch configures the replicas the controller starts through the agents
// for `cutover deploy --model ID` without --replica.
type Launch struct {
	// Replicas is how many replicas one deployment starts, from 1 to
	// pool.MaxReplicas. Default 1.
	Replicas int `yaml:"replicas"`
	// GPUsPerReplica is how many GPUs each replica gets. Default 1.
	GPUsPerReplica int `yaml:"gpus_per_replica"`
	// ReadyTimeout bounds the wait until every launched replica runs
	// (model load can take minutes). Default 20m.
	ReadyTimeout Duration `yaml:"ready_timeout"`
}

// Launch defaults.
const (
	DefaultLaunchReplicas     = 1
	DefaultLaunchGPUs         = 1
	DefaultLaunchReadyTimeout = 20 * time.Minute
)

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// validateCapacity checks the agents and launch blocks.
func (c *Config) validateCapacity() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	names := map[string]int{}
	for i, a := range c.Agents {
		key := fmt.Sprintf("agents[%d]", i)
		switch {
		case a.Name == "":
			add(key+".name", "must be set")
		case !agentNameRE.MatchString(a.Name):
			add(key+".name", "%q: use letters, digits, '-', '_' and '.'", a.Name)
		default:
			if j, dup := names[a.Name]; dup {
				add(key+".name", "duplicate agent name %q (already agents[%d])", a.Name, j)
			} else {
				names[a.Name] = i
			}
		}
		if a.URL == "" {
			add(key+".url", "must be set (http://host:port)")
		} else if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
			add(key+".url", "%q: want http://host:port or https://host:port", a.URL)
		}
		if a.TokenFile == "" {
			add(key+".token_file", "must be set: the file with the agent's bearer token")
		}
	}
	if c.Rollout.RetentionMode == "stop" && c.Validation.PostPromotion > 0 {
		add("validation.post_promotion", "must be 0 with rollout.retention_mode stop: its automatic rollback needs the old pool, which is retired at once")
	}
	switch {
	case c.Launch.Replicas < 1:
		add("launch.replicas", "must be at least 1, got %d", c.Launch.Replicas)
	case c.Launch.Replicas > pool.MaxReplicas:
		// A typo (1000 for 10) would otherwise start that many processes
		// before the pool refused them.
		add("launch.replicas", "%d: at most %d (the most replicas a pool holds)", c.Launch.Replicas, pool.MaxReplicas)
	}
	if c.Launch.GPUsPerReplica < 1 {
		add("launch.gpus_per_replica", "must be at least 1, got %d", c.Launch.GPUsPerReplica)
	}
	if c.Launch.ReadyTimeout <= 0 {
		add("launch.ready_timeout", "must be positive, got %s", c.Launch.ReadyTimeout)
	}
	return errs
}
