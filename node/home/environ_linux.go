package home

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// scrubEnvBlock overwrites the entry name=... of the environment block the
// process started with, which the kernel shows in /proc/PID/environ and
// which the Go runtime copied but never changes: it finds the block's
// address in /proc/self/stat (env_start, field 50) and the entry's offset
// in /proc/self/environ, and writes zeros there through /proc/self/mem.
func scrubEnvBlock(name string) error {
	env, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		return fmt.Errorf("home: scrub %s: %w", name, err)
	}
	off := -1
	for i := 0; i < len(env); {
		end := bytes.IndexByte(env[i:], 0)
		if end < 0 {
			end = len(env) - i
		}
		if bytes.HasPrefix(env[i:i+end], []byte(name+"=")) {
			off = i
			break
		}
		i += end + 1
	}
	if off < 0 {
		return nil // set after the start: only the runtime has it
	}
	n := bytes.IndexByte(env[off:], 0)
	if n < 0 {
		n = len(env) - off
	}
	clear(env)
	start, err := envStart()
	if err != nil {
		return fmt.Errorf("home: scrub %s: %w", name, err)
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("home: scrub %s: %w", name, err)
	}
	defer mem.Close()
	if _, err := mem.WriteAt(make([]byte, n), int64(start)+int64(off)); err != nil {
		return fmt.Errorf("home: scrub %s: %w", name, err)
	}
	return nil
}

// envStart reads env_start, the address of the environment block, from
// /proc/self/stat.
func envStart() (uint64, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	// Field 2, the command name in parentheses, may hold spaces; fields
	// from 3 on follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/self/stat")
	}
	fields := strings.Fields(string(b[i+1:]))
	const envStartField = 50
	if len(fields) < envStartField-2 {
		return 0, fmt.Errorf("/proc/self/stat has no env_start")
	}
	return strconv.ParseUint(fields[envStartField-3], 10, 64)
}
