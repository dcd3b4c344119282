package proxy

import "time"

// defaultDrainGrace is Server.DrainGrace's zero value.
const defaultDrainGrace = time.Second

func (s *Server) drainGrace() time.Duration {
	switch {
	case s.DrainGrace < 0:
		return 0
	case s.DrainGrace == 0:
		return defaultDrainGrace
	}
	return s.DrainGrace
}

// pastGrace reports that Shutdown began and its grace ended: idle
// connections close now. During the grace a request that arrives on one
// is answered, with Connection: close.
func (s *Server) pastGrace() bool {
	return s.shutdown.Load() && time.Now().UnixNano() >= s.graceEnd.Load()
}
