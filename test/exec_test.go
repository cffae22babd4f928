package test

import (
	"context"
	"os/exec"
	"time"
)

// execCommand runs a short-lived command with a deadline, so a binary that hangs fails the test.
func execCommand(name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = cancel // released when the process ends; the context only bounds it
	return exec.CommandContext(ctx, name, args...)
}
