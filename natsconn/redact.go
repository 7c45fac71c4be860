package natsconn

import (
	"net/url"
	"strings"
)

// Redact returns a server list (one URL or several, comma separated) with any
// user, password or token replaced by "***", for messages and logs.
func Redact(servers string) string {
	parts := strings.Split(servers, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		u.User = nil
		parts[i] = strings.Replace(u.String(), "://", "://***@", 1)
	}
	return strings.Join(parts, ",")
}
