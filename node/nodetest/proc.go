package nodetest

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// RssAnonKB is this process's anonymous resident memory (RssAnon in
// /proc/self/status), in KiB: what measurements report as a process's own
// memory, apart from the files it maps. -1 where it is unknown.
func RssAnonKB() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
