// Package etcdtest runs a real single-member etcd server inside the
// process (go.etcd.io/etcd/server/v3/embed), for tests and cutover demo.
package etcdtest

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cutover-dev/cutover/internal/freeport"
)

// Server is one embedded etcd member on 127.0.0.1.
type Server struct {
	dir              string
	clientURL, peerU url.URL
	name, cluster    string // member name and initial cluster; "" for a single member

	mu sync.Mutex // guards e
	e  *embed.Etcd
}

// Start runs an etcd member with its data in dir, on free loopback ports.
func Start(dir string) (*Server, error) {
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir,
		clientURL: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cport)},
		peerU:     url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pport)}}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// New starts a server in a temporary directory of t and stops it when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func freePort() (int, error) {
	return freeport.Pick() // below the ephemeral range: see package freeport
}

// Endpoint is the client URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string { return s.clientURL.String() }

// Restart starts the member again (after Stop) on the same ports and
// data; a no-op while it runs.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return nil
	}
	cfg := embed.NewConfig()
	cfg.Name = cmp.Or(s.name, "etcdtest")
	cfg.Dir = s.dir
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerU}
	cfg.AdvertisePeerUrls = []url.URL{s.peerU}
	cfg.InitialCluster = cmp.Or(s.cluster, cfg.InitialClusterFromName(cfg.Name))
	var err error
	for range 20 { // the port of a stopped member may linger for a moment
		var e *embed.Etcd
		if e, err = embed.StartEtcd(cfg); err == nil {
			select {
			case <-e.Server.ReadyNotify():
				s.e = e
				return nil
			case <-time.After(30 * time.Second):
				e.Close()
				return fmt.Errorf("etcd in %s not ready after 30s", s.dir)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("start etcd in %s: %w", s.dir, err)
}

// Wipe stops the member, removes its data and starts it again empty on
// the same ports: an etcd that lost its data, or was restored from a
// snapshot older than anything written (its revision starts over).
func (s *Server) Wipe() error {
	s.Stop()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("wipe etcd data %s: %w", s.dir, err)
	}
	return s.Restart()
}

// Stop stops the member; Restart starts it again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// StartCluster runs an n-member etcd cluster with the members' data under
// dir, on free loopback ports. Each member can be stopped and restarted.
func StartCluster(dir string, n int) ([]*Server, error) {
	var members []*Server
	var peers []string
	for i := range n {
		cport, err := freePort()
		if err != nil {
			return nil, err
		}
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{dir: fmt.Sprintf("%s/m%d", dir, i), name: fmt.Sprintf("m%d", i),
			clientURL: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cport)},
			peerU:     url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pport)}}
		members = append(members, s)
		peers = append(peers, s.name+"="+s.peerU.String())
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range members {
		s.cluster = strings.Join(peers, ",")
		wg.Go(func() { errs[i] = s.Restart() }) // a member is ready only once a quorum runs
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range members {
			s.Stop()
		}
		return nil, err
	}
	return members, nil
}

// NewCluster is StartCluster in a temporary directory of t, stopped when
// t ends.
func NewCluster(t testing.TB, n int) []*Server {
	t.Helper()
	ms, err := StartCluster(t.TempDir(), n)
	if err != nil {
		t.Fatalf("start etcd cluster: %v", err)
	}
	t.Cleanup(func() {
		for _, s := range ms {
			s.Stop()
		}
	})
	return ms
}
