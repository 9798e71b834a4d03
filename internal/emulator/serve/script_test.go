package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// emulatorsScript runs ./scripts/emulators with its state in dir.
func emulatorsScript(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	root, err := filepath.Abs("../../..")
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(root, "scripts/emulators"), args...)
	cmd.Env = append(os.Environ(), "KCL_EMULATORS_RUN="+dir)
	out, err := cmd.Output()
	return string(out), err
}

// State left by a reboot (a pid file naming someone else's process) or by
// a kill -9 (a dead process) is not taken for running emulators: env says
// they are not running, and start starts them. After a kill -9 the
// emulators themselves are gone too.
func TestEmulatorsScriptForgetsStaleState(t *testing.T) {
	if missing != nil {
		t.Skipf("needs the emulators (./scripts/test): %v", missing)
	}
	dir := t.TempDir()
	t.Cleanup(func() { _, _ = emulatorsScript(t, dir, "stop") })

	// After a reboot: the pid is another process's (one of the test's own,
	// so that a script taking it for its server signals nothing else).
	other := exec.Command("sleep", "60")
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "env"), []byte("export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:1\n"), 0o644))
	_, err := emulatorsScript(t, dir, "env")
	assert.Error(t, err, "env with a stale pid file")
	out, err := emulatorsScript(t, dir)
	require.NoError(t, err)
	require.NotContains(t, out, "127.0.0.1:1\n")
	m := regexp.MustCompile(`AWS_ENDPOINT_URL_DYNAMODB=(\S+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "start prints the lines: %s", out)
	dynamo := m[1]
	resp, err := http.Get(dynamo)
	require.NoError(t, err, "dynalite answers")
	resp.Body.Close()

	// kill -9 of the server: its emulators die with it, and env says so.
	raw, err := os.ReadFile(filepath.Join(dir, "pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		_, err := emulatorsScript(t, dir, "env")
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "env after kill -9")
	require.Eventually(t, func() bool {
		resp, err := http.Get(dynamo)
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "dynalite ends with the server")
	out, err = emulatorsScript(t, dir)
	require.NoError(t, err, "start after kill -9")
	assert.Contains(t, out, "export AWS_ENDPOINT_URL_KINESIS=")
}
