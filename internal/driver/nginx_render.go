package driver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// NginxRender is what the nginx upstream file depends on besides the
// routing table.
type NginxRender struct {
	// Upstream names the upstream block and prefixes the variables the
	// file defines ($<Upstream>_pool, $<Upstream>_scheme).
	Upstream string
	// Keepalive is the keepalive directive's value; 0 leaves it out.
	Keepalive int
	// Directives are written inside the upstream block before keepalive
	// (nginx wants a balancing method such as least_conn before it).
	Directives []string
}

// RenderNginx returns the file cutover owns for table t: the upstream
// block with the live pool's replicas (those failing health checks marked
// down), and three maps: $<Upstream>_pool names the live pool (for
// `add_header X-Cutover-Pool`), $<Upstream>_scheme is its replicas'
// scheme (for `proxy_pass $<Upstream>_scheme://<Upstream>`), and
// $<Upstream>_config is version, a hash of the rest of the file (for
// `add_header X-Cutover-Config`), which tells answers of workers running
// this file from those of older workers. The output depends only on its
// inputs, so an unchanged table renders the same bytes and needs no
// reload.
func RenderNginx(t *route.Table, o NginxRender) (content []byte, version string, err error) {
	p := t.Live.Pool
	if len(p.Replicas) == 0 {
		return nil, "", fmt.Errorf("pool %s has no replica to put in nginx upstream %s", p.Name, o.Upstream)
	}
	if err := checkNginxPool(p); err != nil {
		return nil, "", err
	}
	scheme := p.Replicas[0].URL.Scheme
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by cutover; do not edit: every routing change replaces this file.\n")
	fmt.Fprintf(&b, "# Live pool: %s (model %s).\n", p.Name, oneLine(p.Model))
	fmt.Fprintf(&b, "upstream %s {\n", o.Upstream)
	for _, r := range p.Replicas {
		addr, _ := address(r) // checked above
		if r.Healthy() {
			fmt.Fprintf(&b, "    server %s;\n", addr)
		} else {
			fmt.Fprintf(&b, "    server %s down; # failing health checks\n", addr)
		}
	}
	for _, d := range o.Directives {
		d = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(d), ";"))
		if d == "" || strings.ContainsAny(d, "{};#\n\r") {
			return nil, "", fmt.Errorf("upstream directive %q must be one directive without braces, comments or inner semicolons", d)
		}
		fmt.Fprintf(&b, "    %s;\n", d)
	}
	if o.Keepalive > 0 {
		fmt.Fprintf(&b, "    keepalive %d;\n", o.Keepalive)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "map \"\" $%s_pool {\n    default %s;\n}\n", o.Upstream, p.Name)
	fmt.Fprintf(&b, "map \"\" $%s_scheme {\n    default %s;\n}\n", o.Upstream, scheme)
	sum := sha256.Sum256(b.Bytes())
	version = hex.EncodeToString(sum[:6])
	fmt.Fprintf(&b, "map \"\" $%s_config {\n    default %s;\n}\n", o.Upstream, version)
	return b.Bytes(), version, nil
}

// checkNginxPools checks that every pool of t, not only the live one,
// could be rendered (checkNginxPool). A deploy that could never be
// promoted is so refused at once, as HAProxy refuses a replica that is no
// server of its backend, not at the promote after its warm-up and
// validation.
func checkNginxPools(t *route.Table) error {
	for _, name := range slices.Sorted(maps.Keys(t.Pools)) {
		if err := checkNginxPool(t.Pools[name].Pool); err != nil {
			return err
		}
	}
	return nil
}

// checkNginxPool checks that nginx can proxy p: one scheme for its
// replicas, each one an address nginx can name.
func checkNginxPool(p *pool.Pool) error {
	for _, r := range p.Replicas {
		if s := p.Replicas[0].URL.Scheme; r.URL.Scheme != s {
			return fmt.Errorf("pool %s mixes %s and %s replicas (%s): nginx proxies a pool with one scheme", p.Name, s, r.URL.Scheme, r.Name)
		}
		if _, err := address(r); err != nil {
			return fmt.Errorf("pool %s: %w", p.Name, err)
		}
	}
	return nil
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }
