package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestTmpBenchSweep(t *testing.T) {
	a := os.Getenv("SWEEP_ARGS")
	if a == "" {
		t.Skip()
	}
	e := &env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	if err := cmdBenchSweep(context.Background(), e, strings.Fields(a)); err != nil {
		t.Fatal(err)
	}
}
