// Package route holds the routing table: the immutable value the control
// plane builds and the data plane reads through an atomic pointer.
package route

import (
	"encoding/json"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// Table is one routing decision: which pool is live, at which revision.
// It is never modified after New returns; a change is a new Table.
type Table struct {
	// Revision is the state revision this table was built from.
	Revision int64
	// ModelName is the client-facing model name, "" when requests pass
	// through unchanged.
	ModelName string
	// Live is the pool that receives client traffic. Never nil.
	Live *Entry
	// Pools holds every pool by name, Live included.
	Pools map[string]*Entry
	// Canary is the pool that receives CanaryWeight percent of new
	// requests during a canary (see Pick). Nil outside a canary.
	Canary *Entry
	// CanaryWeight is the percentage (0-100) of new requests Pick sends
	// to Canary; 0 sends none, 100 all.
	CanaryWeight int
	// AffinityHeader names the request header whose value Pick hashes
	// instead of drawing a random number. Empty: no affinity.
	AffinityHeader string
	// AffinityHash names the request body fields ("user",
	// "first_message") whose value, the first one present, the data plane
	// hashes (KeyHashBytes) when the request has no AffinityHeader value.
	// Empty: none.
	AffinityHash []string
}

// Entry is a pool with the values the data plane derives from it once per
// table instead of once per request.
type Entry struct {
	// Pool is the pool itself.
	Pool *pool.Pool
	// ModelJSON is Pool.Model as a JSON string, quotes included.
	ModelJSON []byte
	// PoolHeader is []string{Pool.Name} for the X-Cutover-Pool header.
	// Never modify it.
	PoolHeader []string
	// modelName is the client-facing model name, "" for none; created
	// is when the entry was made (the list's created).
	modelName string
	created   int64
	// Sleeping, when not nil, says the pool's replicas are put to sleep
	// (the pool retained for rollback under rollout.retention_mode: sleep):
	// it is the same pool without replicas, which requests naming the
	// pool (the pool header, the preview listener) get instead, so that
	// they are answered 503 no_healthy_replica rather than sent to a
	// sleeping vLLM. Nil while the pool is awake.
	Sleeping *Entry
}

// MarkSleeping sets t.Pools[name].Sleeping; a no-op for an unknown pool
// or the live one. Call it before the table is shared.
func (t *Table) MarkSleeping(name string) {
	e := t.Pools[name]
	if e == nil || e == t.Live {
		return
	}
	e.Sleeping = &Entry{Pool: &pool.Pool{Name: e.Pool.Name, Model: e.Pool.Model}, ModelJSON: e.ModelJSON, PoolHeader: e.PoolHeader,
		modelName: e.modelName, created: e.created}
}

// NewEntry derives an Entry from p; modelName is the client-facing model
// name or "".
func NewEntry(p *pool.Pool, modelName string) *Entry {
	mj, _ := json.Marshal(p.Model) // a string always marshals
	return &Entry{Pool: p, ModelJSON: mj, PoolHeader: []string{p.Name}, modelName: modelName, created: time.Now().Unix()}
}

// HasModelName reports whether a client-facing model name is set, so that
// the gateway answers GET /v1/models itself (ModelsBody).
func (e *Entry) HasModelName() bool { return e.modelName != "" }

// ModelName returns the client-facing model name, "" for none.
func (e *Entry) ModelName() string { return e.modelName }

// ModelsBody returns the gateway's own answer to GET /v1/models when a
// client-facing model name is set, as vLLM lists a model: that name, with
// the pool's model id as its root and, once a health check learned it
// from a healthy replica, its max_model_len (see pool.Pool.MaxModelLen);
// then the LoRA adapters the healthy replicas list (pool.Pool.Listed),
// with that name as their parent. may, when not nil, says which ids to
// list (a client key's). Nil when no model name is set.
func (e *Entry) ModelsBody(may func(id string) bool) []byte {
	if e.modelName == "" {
		return nil
	}
	b, _ := json.Marshal(struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", e.models(may)})
	return b
}

// ModelBody is the gateway's answer to GET /v1/models/{id} (OpenAI's
// "retrieve model", which vLLM does not serve): the entry of ModelsBody
// whose id is id, and false when there is none.
func (e *Entry) ModelBody(id string, may func(id string) bool) ([]byte, bool) {
	if e.modelName == "" {
		return nil, false
	}
	for _, m := range e.models(may) {
		if m.ID == id {
			b, _ := json.Marshal(m)
			return b, true
		}
	}
	return nil, false
}

// model is an entry of a /v1/models list, as vLLM writes one.
type model struct {
	ID          string  `json:"id"`
	Object      string  `json:"object"`
	Created     int64   `json:"created"`
	OwnedBy     string  `json:"owned_by"`
	Root        string  `json:"root"`
	Parent      *string `json:"parent"`
	MaxModelLen int64   `json:"max_model_len,omitempty"`
}

// models are the entries of ModelsBody: model_name, then the adapters
// every healthy replica lists, those may allows (nil: all).
func (e *Entry) models(may func(id string) bool) []model {
	data := make([]model, 0, 1)
	if may == nil || may(e.modelName) {
		data = append(data, model{ID: e.modelName, Object: "model", Created: e.created, OwnedBy: "cutover", Root: e.Pool.Model,
			MaxModelLen: e.Pool.MaxModelLen()})
	}
	for _, id := range e.Pool.Listed() {
		if id != e.modelName && (may == nil || may(id)) {
			data = append(data, model{ID: id, Object: "model", Created: e.created, OwnedBy: "cutover", Root: id, Parent: &e.modelName})
		}
	}
	return data
}

// New builds a table with live as the live pool. live must name one of
// pools; New panics otherwise, since that is a programming error.
func New(revision int64, live, modelName string, pools ...*pool.Pool) *Table {
	t := &Table{Revision: revision, ModelName: modelName, Pools: make(map[string]*Entry, len(pools))}
	for _, p := range pools {
		e := NewEntry(p, modelName)
		t.Pools[p.Name] = e
		if p.Name == live {
			t.Live = e
		}
	}
	if t.Live == nil {
		panic("route.New: live pool " + live + " not among pools")
	}
	return t
}
