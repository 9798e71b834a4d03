package kcl

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kclgo/kcl/internal/emulator"
)

// The emulators every test runs against, started once per test binary.
var emu struct {
	kinesisLocal, kinesalite, dynalite *emulator.Server
}

// emuMissing is why the emulators are not running (nil when they are): then
// the tests that need them skip (needEmulators), and the rest run.
var emuMissing error

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker())
	}
	if slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.fuzzworker") }) {
		os.Exit(m.Run()) // a fuzzing worker runs fuzz targets only: no emulators
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if emuMissing = emulator.Missing(emulator.KinesisLocal, emulator.Kinesalite, emulator.Dynalite); emuMissing != nil {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var errs [3]error
	for i, p := range []struct {
		dst  **emulator.Server
		kind emulator.Kind
	}{{&emu.kinesisLocal, emulator.KinesisLocal}, {&emu.kinesalite, emulator.Kinesalite}, {&emu.dynalite, emulator.Dynalite}} {
		wg.Add(1)
		go func() { defer wg.Done(); *p.dst, errs[i] = emulator.Start(ctx, p.kind) }()
	}
	wg.Wait()
	for _, s := range []*emulator.Server{emu.kinesisLocal, emu.kinesalite, emu.dynalite} {
		if s != nil {
			defer s.Stop()
		}
	}
	for _, err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, "kcl tests need the emulators:", err)
			return 1
		}
	}
	return m.Run()
}
