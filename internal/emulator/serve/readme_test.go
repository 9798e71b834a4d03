package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kclgo/kcl/internal/emulator"
)

// missing is why the emulators are not installed (nil if they are): the
// test skips, unless emulator.RequireEnv is set.
var missing error

func TestMain(m *testing.M) {
	missing = emulator.Missing(emulator.KinesisLocal, emulator.Dynalite)
	os.Exit(m.Run())
}

// readmeSection is the README section whose commands the test runs.
const readmeSection = "## Run your own app against the emulators"

// step is one command of the section: the shell line and its comment.
type step struct{ line, comment string }

// readmeSteps returns the lines of the section's sh blocks, in order.
func readmeSteps(t *testing.T, root string) []step {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n"+readmeSection+"\n")
	require.True(t, ok, "README has a section %q", readmeSection)
	section, _, _ = strings.Cut(section, "\n## ")
	var steps []step
	inBlock := false
	for _, l := range strings.Split(section, "\n") {
		switch {
		case l == "```sh":
			inBlock = true
		case l == "```":
			inBlock = false
		case inBlock && strings.TrimSpace(l) != "":
			line, comment, _ := strings.Cut(l, " # ")
			steps = append(steps, step{strings.TrimSpace(line), strings.TrimSpace(comment)})
		}
	}
	return steps
}

// The commands of README's "Run your own app against the emulators", run
// as a user runs them: start the emulators, eval their variables, produce,
// consume (until Ctrl-C), kcl status while the consumer runs, stop. Each
// step's output is checked, and each kind of step must be there.
func TestREADMECommandsRunYourOwnAppAgainstTheEmulators(t *testing.T) {
	if missing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", missing)
	}
	root, err := filepath.Abs("../../..")
	require.NoError(t, err)
	steps := readmeSteps(t, root)

	// Its own state folder: emulators a developer started with the script
	// are neither reused nor stopped.
	state := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "KCL_EMULATORS_RUN=") {
			env = append(env, kv)
		}
	}
	env = append(env, "KCL_EMULATORS_RUN="+state)
	var evals []string // the eval lines run so far: each later step runs after them
	shell := func(ctx context.Context, line string) *exec.Cmd {
		script := strings.Join(append(append([]string{"set -euo pipefail"}, evals...), line), "\n")
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Dir, cmd.Env = root, env
		// Its own process group, as a shell's job: Ctrl-C and a timeout
		// reach go run's child too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}
	run := func(line string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := shell(ctx, line)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		require.NoError(t, err, "%s\nstdout:\n%s\nstderr:\n%s", line, &stdout, &stderr)
		return stdout.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(state, "log")); err == nil {
				t.Logf("emulators' log:\n%s", log)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := shell(ctx, "./scripts/emulators stop").CombinedOutput(); err != nil {
			t.Errorf("stopping the emulators: %v\n%s", err, out)
		}
	})

	var (
		seen     = map[string]bool{}
		records  = -1 // written by the producer
		shards   = -1 // created by the producer
		consumer *exec.Cmd
		consumed = &syncBuffer{}
		logs     = &syncBuffer{} // the consumer's stderr: kcl's log
	)
	stopConsumer := func() { // Ctrl-C, as the README says
		t.Helper()
		require.NoError(t, syscall.Kill(-consumer.Process.Pid, syscall.SIGINT))
		// go run exits 1 after an interrupt whatever its program did; it
		// says "exit status N" only when the program failed.
		err := consumer.Wait()
		consumer = nil
		if err != nil {
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			require.Equal(t, 1, exit.ExitCode(), "go run after Ctrl-C")
		}
		assert.Contains(t, logs.String(), `msg="kcl: consumer stopped"`, "the consumer ends cleanly on Ctrl-C")
		assert.NotContains(t, logs.String(), "exit status")
		assert.NotContains(t, logs.String(), "level=ERROR")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer's stdout:\n%s\nits stderr:\n%s", consumed, logs)
		}
		if consumer != nil {
			_ = syscall.Kill(-consumer.Process.Pid, syscall.SIGKILL)
			_ = consumer.Wait()
		}
	})
	for _, s := range steps {
		t.Logf("$ %s", s.line)
		switch {
		case s.line == "./scripts/emulators":
			seen["start"] = true
			out := run(s.line)
			for _, name := range []string{"AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:", "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:",
				"AWS_REGION=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_EC2_METADATA_DISABLED=true"} {
				assert.Contains(t, out, "export "+name, "the printed lines")
			}
			require.Equal(t, out, run(s.line), "starting again while they run prints the same lines")

		case s.line == `eval "$(./scripts/emulators env)"`:
			seen["eval"] = true
			require.Empty(t, run(s.line))
			evals = append(evals, s.line)

		case strings.HasPrefix(s.line, "go run ./examples/producer "):
			seen["producer"] = true
			out := run(s.line)
			m := regexp.MustCompile(`wrote (\d+) records`).FindStringSubmatch(out)
			require.NotNil(t, m, "producer's output: %s", out)
			records, _ = strconv.Atoi(m[1])
			m = regexp.MustCompile(`-create (\d+)`).FindStringSubmatch(s.line)
			require.NotNil(t, m, "the producer creates the stream")
			shards, _ = strconv.Atoi(m[1])

		case strings.HasPrefix(s.line, "go run ./examples/consumer "):
			seen["consumer"] = true
			require.Contains(t, s.comment, "Ctrl-C", "the consumer runs until Ctrl-C")
			require.Positive(t, records, "records were produced before the consumer starts")
			consumer = shell(context.Background(), s.line)
			consumer.Stdout, consumer.Stderr = consumed, logs
			require.NoError(t, consumer.Start())
			want := map[string]bool{}
			for n := range records {
				want[fmt.Sprintf(`\"n\":%d,`, n)] = true
			}
			require.Eventually(t, func() bool {
				for _, l := range strings.Split(consumed.String(), "\n") {
					if m := regexp.MustCompile(`\\"n\\":\d+,`).FindString(l); strings.HasPrefix(l, "shardId-") && m != "" {
						delete(want, m)
					}
				}
				return len(want) == 0
			}, time.Minute, 100*time.Millisecond, "the consumer prints every record produced")

		case strings.HasPrefix(s.line, "go run ./cmd/kcl status "):
			seen["status"] = true
			require.NotNil(t, consumer, "status runs while the consumer runs")
			out := run(s.line)
			assert.Regexp(t, `lease table \S+`, out)
			assert.Contains(t, out, "problems: none")
			rows := 0
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) >= 4 && strings.HasPrefix(f[0], "shardId-") {
					rows++
					assert.Equal(t, []string{"open", "yes"}, []string{f[1], f[3]}, "an open shard owned by a live worker: %s", l)
				}
			}
			assert.Equal(t, shards, rows, "one row per shard:\n%s", out)

		case s.line == "./scripts/emulators stop":
			seen["stop"] = true
			require.NotNil(t, consumer, "the consumer runs until the end")
			stopConsumer()
			run(s.line)
			err := shell(context.Background(), "./scripts/emulators env").Run()
			assert.Error(t, err, "env fails once they are stopped")

		default:
			t.Fatalf("README's section runs a command the test does not know: %s", s.line)
		}
	}
	for _, kind := range []string{"start", "eval", "producer", "consumer", "status", "stop"} {
		assert.True(t, seen[kind], "README's section has a %s step", kind)
	}
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
