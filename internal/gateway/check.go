package gateway

import (
	"github.com/cutover-dev/cutover/internal/auth"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/secret"
)

// prepared is what New reads from the files a configuration names before
// it opens anything: a start and `cutover config check` decide alike
// because both go through prepare.
type prepared struct {
	picker    pool.Picker
	specs     map[string]rollout.PoolSpec
	keys      *auth.Keys // nil without auth.api_keys_file
	tls       *tlsSetup
	readToken string // empty without admin.read_token_file
	// poolKeys are the keys of pools.<pool>.api_key_file, by pool ("":
	// none), so a reload can tell a key file whose contents changed.
	poolKeys map[string]string
}

// prepare checks what Validate cannot without touching the disk: the
// balancer, the key, token and certificate files. It binds nothing and
// writes nothing; every error names the key (exit 2).
func prepare(cfg *config.Config, token string) (*prepared, error) {
	p := &prepared{specs: map[string]rollout.PoolSpec{}, poolKeys: map[string]string{}}
	var err error
	if p.picker, err = pool.NewPicker(cfg.Balancer); err != nil {
		return nil, err
	}
	if cfg.Balancer == "llm" {
		p.picker = pool.NewLLM(llmOptions(cfg.Balancing))
	}
	for _, name := range config.PoolNames {
		pc := cfg.Pools[name]
		spec := rollout.PoolSpec{Model: pc.Model, APIKeyFile: pc.APIKeyFile, GPUsPerReplica: pc.GPUsPerReplica}
		if pc.APIKeyFile != "" {
			key, err := secret.ReadFile(pc.APIKeyFile)
			if err != nil {
				return nil, &config.Error{Fields: []*config.FieldError{{Key: "pools." + name + ".api_key_file", Msg: err.Error()}}}
			}
			p.poolKeys[name] = key
		}
		for _, raw := range pc.Replicas {
			norm, err := config.NormalizeReplicaURL(raw)
			if err != nil {
				return nil, err
			}
			spec.Replicas = append(spec.Replicas, norm)
		}
		p.specs[name] = spec
	}
	if cfg.Auth.APIKeysFile != "" {
		if p.keys, err = auth.Load(cfg.Auth.APIKeysFile); err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "auth.api_keys_file", Msg: err.Error()}}}
		}
	}
	if p.tls, err = loadTLS(cfg); err != nil {
		return nil, err
	}
	if _, _, err := poolHeaderOptions(cfg); err != nil {
		return nil, err
	}
	if cfg.Admin.ReadTokenFile != "" {
		if p.readToken, err = secret.ReadFile(cfg.Admin.ReadTokenFile); err != nil {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "admin.read_token_file", Msg: err.Error()}}}
		}
		if p.readToken == token {
			return nil, &config.Error{Fields: []*config.FieldError{{Key: "admin.read_token_file", Msg: "holds the admin token itself; give the read-only token its own value"}}}
		}
	}
	return p, nil
}

// Check reads every file cfg names (keys, tokens, certificates) and
// checks what New would refuse before it binds a listener, without
// binding, opening the state or contacting a replica. A nil error means
// serve gets past its configuration; listeners and the state are only
// tried by a start. token is the admin token (config.AdminToken).
func Check(cfg *config.Config, token string) error {
	_, err := prepare(cfg, token)
	return err
}
