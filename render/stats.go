package render

import (
	"slices"
	"time"
)

// percentileDur is the p-th percentile (nearest rank) of d; 0 for none. d is not modified.
func percentileDur(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
