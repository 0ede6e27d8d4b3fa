//go:build !unix

package vpx

import "time"

func cpuTime() time.Duration { return 0 }
