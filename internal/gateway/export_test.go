package gateway

// CheckTLS runs one tick of the certificate files' watch.
func (g *Gateway) CheckTLS() { g.checkTLS() }
