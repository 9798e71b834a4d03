// Command serve runs kinesis-local and dynalite on loopback, as kcl's tests
// start them, for ./scripts/emulators; users run the script, not this.
//
//	serve -dir emulators/run
//
// Once both answer, it writes DIR/env, one `export NAME=value` line per
// variable of emulator.Env, and runs until SIGTERM or SIGINT. Then, or when
// an emulator ends by itself, it stops both and removes DIR/env. The
// emulators die with it even on SIGKILL (emulator.Start), which leaves
// DIR/env behind: the script checks that the process is still alive.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kclgo/kcl/internal/emulator"
)

func main() {
	dir := flag.String("dir", "", "folder for the env file (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "serve: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	kin, err := emulator.Start(ctx, emulator.KinesisLocal)
	if err != nil {
		return err
	}
	defer kin.Stop()
	ddb, err := emulator.Start(ctx, emulator.Dynalite)
	if err != nil {
		return err
	}
	defer ddb.Stop()

	envFile := filepath.Join(dir, "env")
	var lines strings.Builder
	for _, kv := range emulator.Env(kin, ddb) {
		fmt.Fprintf(&lines, "export %s\n", kv)
	}
	// Written whole, then renamed: the script never reads half a file.
	if err := os.WriteFile(envFile+".tmp", []byte(lines.String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(envFile+".tmp", envFile); err != nil {
		return err
	}
	defer os.Remove(envFile)
	fmt.Printf("serving: kinesis-local at %s, dynalite at %s\n", kin.Endpoint, ddb.Endpoint)

	select {
	case <-ctx.Done():
		fmt.Println("stopping on a signal")
		return nil
	case <-kin.Exited():
		return fmt.Errorf("%s ended by itself", kin.Kind)
	case <-ddb.Exited():
		return fmt.Errorf("%s ended by itself", ddb.Kind)
	}
}
