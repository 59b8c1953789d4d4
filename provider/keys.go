package provider

// Keys holds the real API keys, by provider: each provider's default key
// is named "", and policies may pick further named keys. A key is only
// ever looked up under the provider of the host a request goes to, so a
// provider's key cannot be sent to another provider's host.
type Keys map[Name]map[string]string

// Key returns provider p's key named name ("" for its default key).
func (k Keys) Key(p Name, name string) (string, bool) {
	v, ok := k[p][name]
	return v, ok && v != ""
}

// Set sets provider p's key named name.
func (k Keys) Set(p Name, name, key string) {
	if k[p] == nil {
		k[p] = map[string]string{}
	}
	k[p][name] = key
}
