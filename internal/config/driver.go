package config

import "fmt"

// NginxDriver configures driver: nginx.
type NginxDriver struct{}

// HAProxyDriver configures driver: haproxy.
type HAProxyDriver struct{}

func (c *Config) validateDriver() []*FieldError {
	switch c.Driver {
	case "builtin":
		return nil
	}
	return []*FieldError{{Key: "driver", Msg: fmt.Sprintf("unknown driver %q (want builtin)", c.Driver)}}
}
