package config

import "github.com/cardiostream/cardiostream/internal/registry"

// RegistryConfig returns the model registry's configuration as processes use
// it: the registry section, with the streams topology (prefix, replicas,
// storage) and whether the environment is production (force refused;
// signatures required when registry.public_keys is set).
func (c *Config) RegistryConfig() registry.Config {
	r := c.Registry
	r.Streams = c.Streams
	r.Production = c.Env == Production
	return r
}
