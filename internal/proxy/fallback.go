package proxy

// framingKey is the context key of a handed-off connection's framingScan.
type framingKey struct{}
