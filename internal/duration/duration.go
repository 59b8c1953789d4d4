// Package duration parses the durations sessctl's configuration and
// command-line filters accept: a Go duration ("90m", "24h") or a whole
// number of days ("7d"), never negative. It is the one parser both the
// config package and the session query service use, so that neither
// imports the other.
package duration

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Parse reads a non-negative Go duration or a number of days ("7d").
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return v, nil
}
